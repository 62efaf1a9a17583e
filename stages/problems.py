"""What a run left undone, typed: callers test a problem's kind, never its wording."""

from __future__ import annotations

from typing import Literal

import msgspec

ProblemKind = Literal["incomplete", "call_failed", "not_started", "nothing_to_train", "training_failed", "batches_open"]


class Problem(msgspec.Struct, frozen=True):
    """One thing a run left undone: its kind and a one-line message (what, where, what to do).

    incomplete: samples ended with failed or unsent calls; call_failed: why a teacher's calls
    failed; not_started: mistakes the spending cap left unsent; nothing_to_train: no sample
    was included, so no student was trained; training_failed: a training process failed;
    batches_open: provider batches still running when teaching ended, their results not yet collected.
    """

    kind: ProblemKind
    message: str


NOTHING_TO_TRAIN = Problem(
    "nothing_to_train",
    "no sample was included (no rationale reached review.threshold), so train.jsonl is empty and nothing was "
    "trained; see report.md for the scores, then lower the threshold or use stronger teachers",
)
