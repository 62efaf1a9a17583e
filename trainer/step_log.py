"""The loss logs: one JSON line per optimizer step, written by the trainer, read by it on resume and by the reports.

`train_log.jsonl` (and `train_log_<task>.jsonl` per dataset) holds `TrainStepRow`s,
`dpo_log.jsonl` holds `DpoStepRow`s. No torch here: the reports import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec


class StepRow(msgspec.Struct, frozen=True):
    """What every loss log says of a step. A figure that was not a number (a diverged step) is
    None: JSON has no NaN, and msgspec writes it as null."""

    step: int
    epoch: float
    loss: float | None
    lr: float
    grad_norm: float | None
    tokens_per_s: float


class TrainStepRow(StepRow, frozen=True):
    """A FAIR training step: the joint loss and its two parts (trainer/loss.py)."""

    loss_feedback: float | None
    loss_rationale: float | None


class DpoStepRow(StepRow, frozen=True):
    """A DPO step: the loss, the share of pairs ranked right and the mean reward margin (trainer/dpo_loss.py)."""

    reward_accuracy: float | None
    reward_margin: float | None


R = TypeVar("R", TrainStepRow, DpoStepRow)

_encoder = msgspec.json.Encoder()


def encode_row(row: StepRow) -> bytes:
    """One log line, newline included."""
    return _encoder.encode(row) + b"\n"


def read_step_log(path: Path, kind: type[R]) -> list[R]:
    """The rows of a loss log that decode (none when it is absent); a torn last line (killed training) is skipped."""
    if not path.is_file():
        return []
    decoder = msgspec.json.Decoder(kind)
    rows = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            try:
                rows.append(decoder.decode(line))
            except msgspec.DecodeError:
                continue
    return rows
