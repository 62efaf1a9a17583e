"""The exam (step 1 of FAIR): the student answers the training split; its mistakes go to the teachers.

Each wrong answer is sent on the teachers' stream the moment it is graded, so
teachers start on the first mistakes while the student is still answering the
rest. Answers live in the run's store: a rerun generates only what is missing,
and streams (and writes) every mistake again, stored ones first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, aclosing
from pathlib import Path

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from core.config import GraderName
from core.records import Mistake, Question, mistake_from
from prompts.sets import PromptSet
from prompts.student import PromptFormat
from student.answering import answer_all
from student.answers_store import AnswersStore
from student.backend import StudentBackend

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class ExamSummary(msgspec.Struct, frozen=True, kw_only=True):
    """How the exam went. `generated` counts answers produced in this run (the rest came
    from the store); `questions_per_s` is over those, so a fully resumed exam shows 0."""

    n: int
    correct: int
    mistakes: int
    generated: int
    wall_s: float
    questions_per_s: float


def mistake_line(mistake: Mistake) -> bytes:
    """One mistakes.jsonl line; the optional fields (context, options, gold_text) only when set."""
    return _encoder.encode(mistake) + b"\n"


async def run_exam(
    questions: Sequence[Question],
    backend: StudentBackend,
    store: AnswersStore,
    fmt: PromptFormat,
    *,
    prompts: PromptSet | None = None,
    grader: GraderName = "committee",
    send: MemoryObjectSendStream[Mistake] | None = None,
    mistakes_path: Path | None = None,
) -> ExamSummary:
    """Answer `questions` (the training split), grade them, and hand over every mistake.

    Every wrong answer goes on `send` as soon as it is known, and into
    `mistakes_path` (rewritten from the start each run: stored mistakes come
    first, so a resumed run's file is complete again).
    `send` is closed when the exam returns or fails: the consumer's loop ends with
    it; pass `send.clone()` to keep your own end open.
    """
    start = time.perf_counter()
    n = correct = mistakes = generated = 0
    async with AsyncExitStack() as stack:
        if send is not None:
            await stack.enter_async_context(send)
        out = None
        if mistakes_path is not None:
            mistakes_path.parent.mkdir(parents=True, exist_ok=True)
            out = await stack.enter_async_context(await anyio.open_file(mistakes_path, "wb"))
        graded = answer_all(questions, backend, store, fmt, split="train", prompts=prompts, grader=grader)
        answers = await stack.enter_async_context(aclosing(graded))
        async for question, answer, fresh in answers:
            n += 1
            generated += fresh
            if answer.correct:
                correct += 1
                continue
            mistakes += 1
            mistake = mistake_from(question, answer.text, answer.final_answer)
            if out is not None:
                await out.write(mistake_line(mistake))
                # Flushed per line: the file shows the exam's progress to anyone tailing it.
                await out.flush()
            if send is not None:
                await send.send(mistake)
    wall_s = time.perf_counter() - start
    summary = ExamSummary(
        n=n,
        correct=correct,
        mistakes=mistakes,
        generated=generated,
        wall_s=wall_s,
        questions_per_s=generated / wall_s if generated and wall_s > 0 else 0.0,
    )
    log.info(
        "exam: %d questions, %d correct, %d mistakes, %d generated in %.1fs", n, correct, mistakes, generated, wall_s
    )
    return summary
