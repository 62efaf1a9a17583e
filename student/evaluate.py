"""Accuracy on the test split, for the original student and each trained checkpoint.

`eval.json` holds one entry per (task, model, checkpoint), merged across runs of
the eval stage, with a 95% Wilson score interval: at the few hundred questions
we test on, a normal interval would be too narrow near 0 and 1.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path

import msgspec

from core.config import GraderName
from core.errors import DataError
from core.records import Mistake, Question, mistake_from
from prompts.sets import PromptSet
from prompts.student import PromptFormat
from student.answering import answer_all
from student.answers_store import AnswersStore
from student.backend import StudentBackend
from student.exam import mistake_line

BASE = "base"
_Z95 = 1.959963984540054


class EvalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of eval.json's `evals`."""

    task: str
    model: str
    checkpoint: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float


class EvalFile(msgspec.Struct, kw_only=True):
    evals: list[EvalEntry] = []


class EvalResult(msgspec.Struct, frozen=True, kw_only=True):
    """An eval of one checkpoint on one task: the eval.json entry, the wrong predictions, timing."""

    entry: EvalEntry
    wrong: tuple[Mistake, ...]
    generated: int
    wall_s: float


def wilson_interval(correct: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of `correct` successes in `n` trials; (0, 1) when n is 0.

    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


async def run_eval(
    questions: Sequence[Question],
    backend: StudentBackend,
    store: AnswersStore,
    fmt: PromptFormat,
    *,
    prompts: PromptSet | None = None,
    grader: GraderName = "committee",
    checkpoint: str,
    model: str,
) -> EvalResult:
    """Answer the test split and measure accuracy; answers already in the store are reused.

    `checkpoint` is "base" for the original student, else the trained model's
    directory name; `model` is the student's name in the config. `questions` must
    all be of one task.
    """
    tasks = {q.task for q in questions}
    if len(tasks) > 1:
        raise ValueError(f"run_eval takes one task at a time, got {sorted(tasks)}")
    task = tasks.pop() if tasks else ""
    start = time.perf_counter()
    correct = generated = 0
    wrong: list[Mistake] = []
    graded = answer_all(questions, backend, store, fmt, split="test", prompts=prompts, grader=grader)
    async with aclosing(graded) as answers:
        async for question, answer, fresh in answers:
            generated += fresh
            if answer.correct:
                correct += 1
            else:
                wrong.append(mistake_from(question, answer.text, answer.final_answer))
    n = len(questions)
    low, high = wilson_interval(correct, n)
    entry = EvalEntry(
        task=task,
        model=model,
        checkpoint=checkpoint,
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
    )
    return EvalResult(entry=entry, wrong=tuple(wrong), generated=generated, wall_s=time.perf_counter() - start)


def write_eval_json(path: Path, results: Sequence[EvalResult]) -> list[EvalEntry]:
    """Merge `results` into `path` (eval.json) and write each one's wrong predictions beside it.

    An entry replaces an older one of the same (task, model, checkpoint); others
    are kept. Wrong predictions go to `eval_wrong_<task>_<checkpoint>.jsonl`.
    Returns every entry now in the file. Raises `DataError` if the existing file
    is not an eval.json.
    """
    existing: list[EvalEntry] = []
    if path.exists():
        try:
            existing = msgspec.json.decode(path.read_bytes(), type=EvalFile).evals
        except msgspec.DecodeError as exc:
            raise DataError(f"{path}: not an eval.json ({exc}); move it away and rerun the eval stage") from None
    fresh = {(r.entry.task, r.entry.model, r.entry.checkpoint): r.entry for r in results}
    merged = [e for e in existing if (e.task, e.model, e.checkpoint) not in fresh] + list(fresh.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, msgspec.json.format(msgspec.json.encode(EvalFile(evals=merged)), indent=2) + b"\n")
    for r in results:
        wrong_path = path.parent / f"eval_wrong_{r.entry.task}_{r.entry.checkpoint}.jsonl"
        _write_atomic(wrong_path, b"".join(mistake_line(m) for m in r.wrong))
    return merged


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
