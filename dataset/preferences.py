"""Preference pairs from peer review: `preferences.jsonl` in TRL's DPO format.

Peer review scores every rationale of a sample; two rationales of the same
question whose mean scores differ by at least `[dpo] min_margin` make a pair,
the better one `chosen`. Lines use TRL's conversational preference format
(https://huggingface.co/docs/trl/dataset_formats#preference): `prompt` is the
user turn the student sees (its instruction and the question, as the chat
layout builds it), `chosen` / `rejected` one assistant turn each, so
`trl.DPOTrainer` reads the file as is; the extra columns say where a pair came
from. The file is rebuilt from dataset.jsonl alone.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import msgspec

from core.config import TaskName
from core.errors import DataError
from core.jsonl import decode_lines
from core.records import RecordDecoder
from core.samples import DecidedSample, RationaleOutcome
from prompts import BUILTIN, Templates
from prompts.messages import format_question
from prompts.student import instruction_name


class Message(msgspec.Struct, frozen=True):
    """One chat turn, as TRL's conversational datasets hold them."""

    role: str
    content: str


class PreferencePair(msgspec.Struct, frozen=True, kw_only=True):
    """One line of preferences.jsonl: two reviewed rationales of one sample, the better one chosen."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    id: str
    task: TaskName
    # The question as the student's prompt builders take it, for trainers that render it themselves.
    question: str
    chosen_teacher: str
    rejected_teacher: str
    chosen_score: float
    rejected_score: float
    margin: float


def _scored(r: RationaleOutcome) -> bool:
    return bool(r.text) and r.mean is not None


def preference_pairs(sample: DecidedSample, min_margin: float, templates: Templates = BUILTIN) -> list[PreferencePair]:
    """Every pair of this sample's scored rationales whose mean scores differ by >= min_margin (and > 0).

    `templates`: where the student's instruction comes from (a run's prompt folder over the built-in set).
    """
    question = format_question(sample)
    user = Message("user", f"{templates.text(instruction_name(sample.task))}\n\n{question}")
    pairs = []
    for a, b in combinations([r for r in sample.rationales if _scored(r)], 2):
        chosen, rejected = (a, b) if a.mean >= b.mean else (b, a)  # type: ignore[operator]
        margin = chosen.mean - rejected.mean  # type: ignore[operator]
        if margin <= 0 or margin < min_margin:
            continue
        pairs.append(
            PreferencePair(
                prompt=[user],
                chosen=[Message("assistant", (chosen.text or "").strip())],
                rejected=[Message("assistant", (rejected.text or "").strip())],
                id=sample.id,
                task=sample.task,
                question=question,
                chosen_teacher=chosen.teacher,
                rejected_teacher=rejected.teacher,
                chosen_score=float(chosen.mean),  # type: ignore[arg-type]
                rejected_score=float(rejected.mean),  # type: ignore[arg-type]
                margin=float(margin),
            )
        )
    return pairs


_sample_decoder = RecordDecoder(DecidedSample)
_pair_decoder = msgspec.json.Decoder(PreferencePair)


def write_preferences(out_dir: Path, min_margin: float, templates: Templates = BUILTIN) -> int:
    """Rebuild `out_dir/preferences.jsonl` from `out_dir/dataset.jsonl`; returns the number of pairs.

    `templates` words the prompts, as in `preference_pairs`.

    Raises `DataError` naming the file and line when dataset.jsonl is missing or malformed.
    """
    source = out_dir / "dataset.jsonl"
    try:
        lines = source.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror}); run the teach stage first") from None
    out: list[bytes] = []
    for sample in decode_lines(source, lines, _sample_decoder, "dataset record"):
        out += [msgspec.json.encode(p) for p in preference_pairs(sample, min_margin, templates)]
    path = out_dir / "preferences.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in out))
    tmp.replace(path)
    return len(out)


def load_preferences(path: Path) -> list[PreferencePair]:
    """Read preferences.jsonl. Raises `DataError` naming the file (and line) when it is unreadable or empty."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read preference pairs ({exc.strerror}); run the teach stage first") from None
    pairs = list(decode_lines(path, lines, _pair_decoder, "preference pair"))
    if not pairs:
        raise DataError(
            f"{path}: no preference pairs (no two rationales of a sample differ by [dpo].min_margin); "
            f"lower min_margin or turn [dpo].enabled off"
        )
    return pairs
