"""From decided samples to the files a user and the trainer read.

`dataset.jsonl` keeps every decided sample with all rationales, scores and
feedback; `train.jsonl` keeps the instruction-tuning records of the included
ones: one accepted rationale and one feedback per sample, picked at random with
the run seed as the paper does (or every accepted rationale, if configured).
Both are rebuilt from the store alone, in a stable order, so a resumed run
writes the same files as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import msgspec

from core.records import RecordDecoder, TrainRecord
from core.samples import DecidedSample
from prompts.sets import PromptSet, prompt_set

_decode_sample = RecordDecoder(DecidedSample).decode


def sample_order(sample_id: str) -> tuple[int, int | str]:
    """Numeric ids (indices into the paper's splits) in numeric order, others after them."""
    return (0, int(sample_id)) if sample_id.isdigit() else (1, sample_id)


def decode_samples(bodies: Iterable[bytes]) -> list[DecidedSample]:
    samples = [_decode_sample(b) for b in bodies]
    samples.sort(key=lambda s: sample_order(s.id))
    return samples


def _sample_rng(sample: DecidedSample, seed: int) -> random.Random:
    # Seeded per sample, not per run order, so the pick does not depend on which
    # sample finished first.
    return random.Random(f"{seed}:{sample.task}:{sample.id}")


def picked_teacher(sample: DecidedSample, seed: int) -> str | None:
    """The teacher whose rationale an included sample trains on (one pick per sample), else None.

    The same first draw as `train_records`, so reports count what train.jsonl holds.
    """
    accepted = [r for r in sample.rationales if r.accepted and r.text]
    if not sample.included or not accepted:
        return None
    return _sample_rng(sample, seed).choice(accepted).teacher


def train_records(
    sample: DecidedSample, *, seed: int, keep_all: bool, prompts: PromptSet | None = None
) -> list[TrainRecord]:
    """The instruction-tuning records of one included sample (none if not included).

    `prompts` (default: the committee set) decides the question text the records keep.
    """
    if not sample.included:
        return []
    accepted = [r for r in sample.rationales if r.accepted and r.text]
    feedback = [f for f in sample.feedback if f.text]
    rng = _sample_rng(sample, seed)
    if keep_all:
        rng.shuffle(feedback)
        pairs = [(r, feedback[i % len(feedback)]) for i, r in enumerate(accepted)]
    else:
        pairs = [(rng.choice(accepted), rng.choice(feedback))]
    question = (prompts or prompt_set("committee")).record_question(sample)
    return [
        TrainRecord(
            id=sample.id,
            task=sample.task,
            question=question,
            student_answer=sample.student_answer,
            feedback=f.text or "",
            rationale=r.text or "",
            feedback_teacher=f.teacher,
            rationale_teacher=r.teacher,
            context=sample.context,
            options=sample.options,
            gold=sample.gold,
        )
        for r, f in pairs
    ]


def record_tasks(train_path: Path) -> set[str]:
    """The tasks that have records in train.jsonl (none when it is missing)."""
    if not train_path.is_file():
        return set()
    view = msgspec.json.Decoder(_TaskView)
    return {view.decode(line).task for line in train_path.read_bytes().splitlines() if line.strip()}


class _TaskView(msgspec.Struct):
    task: str


def write_outputs(
    samples_by_task: dict[str, list[DecidedSample]],
    out_dir: Path,
    *,
    seed: int,
    keep_all: bool,
    prompts: PromptSet | None = None,
) -> dict[str, int]:
    """Write dataset.jsonl and train.jsonl atomically; returns train records per task."""
    counts: dict[str, int] = {}
    dataset_lines: list[bytes] = []
    train_lines: list[bytes] = []
    for task, samples in samples_by_task.items():
        counts[task] = 0
        for sample in samples:
            dataset_lines.append(msgspec.json.encode(sample))
            for record in train_records(sample, seed=seed, keep_all=keep_all, prompts=prompts):
                train_lines.append(msgspec.json.encode(record))
                counts[task] += 1
    _write_lines(out_dir / "dataset.jsonl", dataset_lines)
    _write_lines(out_dir / "train.jsonl", train_lines)
    return counts


def _write_lines(path: Path, lines: list[bytes]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        for line in lines:
            fh.write(line)
            fh.write(b"\n")
    tmp.replace(path)
