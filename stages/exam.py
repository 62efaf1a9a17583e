"""The exam stage: the student answers each dataset's training split; mistakes stream out.

Datasets share one loaded student and take turns on it (one model, one device),
while each dataset's mistakes stream to the teachers as soon as they are graded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from core.config import DatasetSection
from core.records import Mistake, Question
from core.timings import record_phase, timed
from prompts.sets import prompt_set
from prompts.student import PromptFormat, resolve_format
from stages.context import RunContext
from stages.progress import StageBoard
from stages.sources import train_questions
from stages.teach import Producer
from student import StudentBackend, make_backend
from student.answers_store import AnswersStore
from student.exam import ExamSummary, run_exam
from student.metered import MeteredBackend, metered


def exam_file(out_dir: Path, task: str) -> Path:
    return out_dir / "exam" / f"mistakes_{task}.jsonl"


def merge_mistake_files(out_dir: Path, tasks: Sequence[str]) -> Path:
    """Concatenate the per-dataset mistake files into the run's mistakes.jsonl."""
    path = out_dir / "mistakes.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "wb") as out:
        for task in tasks:
            part = exam_file(out_dir, task)
            if part.exists():
                out.write(part.read_bytes())
    tmp.replace(path)
    return path


class Exam:
    """The student loaded once for every dataset's exam of this run.

    The exam row of `board` starts with the first dataset and ends with the last of
    `datasets`; the time spent answering goes to timings.jsonl then.
    """

    def __init__(
        self,
        ctx: RunContext,
        backend: StudentBackend,
        answers: AnswersStore,
        *,
        board: StageBoard | None = None,
        datasets: int = 1,
    ):
        self.ctx = ctx
        self.backend = metered(backend)
        self.answers = answers
        self.fmt: PromptFormat = resolve_format(ctx.cfg.student.prompt_format, backend.tokenizer)
        self.summaries: dict[str, ExamSummary] = {}
        self._turn = anyio.Lock()
        self._board = board
        self._datasets = datasets
        self._started_at: float | None = None

    def _begin(self) -> None:
        if self._started_at is not None:
            return
        self._started_at = time.perf_counter()
        if self._board is not None:
            self._board.start("exam", "answers", lambda: (self.backend.answered(), self.backend.asked or None))

    def _end(self) -> None:
        if len(self.summaries) < self._datasets or self._started_at is None:
            return
        answered = sum(s.generated for s in self.summaries.values())
        questions = sum(s.n for s in self.summaries.values())
        record_phase(
            self.ctx.out_dir, "exam", "answer", time.perf_counter() - self._started_at, self.backend.tokens,
            note=f"{answered} of {questions} questions generated, batch {self.backend.batch_size}",
        )  # fmt: skip
        if self._board is not None:
            self._board.finish("exam")

    async def run(
        self, d: DatasetSection, questions: Sequence[Question], send: MemoryObjectSendStream[Mistake] | None
    ) -> ExamSummary:
        """Examine one dataset (waiting for the student to be free); closes `send` when done."""
        async with self._turn:
            self._begin()
            summary = await run_exam(
                questions,
                self.backend,
                self.answers,
                self.fmt,
                send=send,
                prompts=prompt_set(self.ctx.cfg.run.prompts),
                grader=d.grader,
                mistakes_path=exam_file(self.ctx.out_dir, d.task),
            )
        self.summaries[d.task] = summary
        self._end()
        return summary

    def producer(self, d: DatasetSection, questions: Sequence[Question]) -> Producer:
        """A teach-stage producer that streams this dataset's mistakes as the exam finds them."""

        async def produce(send: MemoryObjectSendStream[Mistake]) -> None:
            await self.run(d, questions, send)

        return produce


@contextmanager
def open_answers(ctx: RunContext):
    """The student-answers table of the run store, closed on exit."""
    answers = AnswersStore.open(ctx.store_path)
    try:
        yield answers
    finally:
        answers.close()


def load_student(
    ctx: RunContext, model_path: Path | str | None = None, *, stage: str = "exam", phase: str = "load model"
) -> MeteredBackend:
    """The configured student backend (or a trained checkpoint's), counted; one-line errors if it cannot load.

    The load time goes to timings.jsonl as `stage`/`phase`.
    """
    with timed(ctx.out_dir, stage, phase):
        return MeteredBackend(make_backend(ctx.cfg.student, model_path=model_path, seed=ctx.cfg.run.seed))


async def run_exam_stage(ctx: RunContext, board: StageBoard | None = None) -> dict[str, ExamSummary]:
    """Examine every dataset that does not import its mistakes; write mistakes.jsonl."""
    todo = [d for d in ctx.cfg.datasets if not d.mistakes]
    questions = {d.task: train_questions(d) for d in todo}
    if not todo:
        return {}
    backend = load_student(ctx)
    try:
        with open_answers(ctx) as answers:
            exam = Exam(ctx, backend, answers, board=board, datasets=len(todo))
            for d in todo:
                await exam.run(d, questions[d.task], None)
    finally:
        await backend.close()
    merge_mistake_files(ctx.out_dir, [d.task for d in todo])
    return exam.summaries
