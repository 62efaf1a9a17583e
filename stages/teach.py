"""The teach stage: stream each dataset's mistakes through the committee into the store.

Datasets run in one task group and share the teachers' lanes, so their rate
limits are shared too. Every decided sample is stored as it is decided; at the
end dataset.jsonl and train.jsonl are rebuilt from the store, and the cost
report is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from accounting.batch_counts import BatchView, batch_views
from accounting.ledger import committed_usd
from accounting.live import ProgressView
from accounting.pricing import teacher_prices
from core.records import Mistake, Question
from core.samples import DecidedSample
from dataset.writer import decode_samples, write_outputs
from engine.budget import Budget
from engine.parking import PARKED_PER_SLOT
from engine.scheduler import Committee, TeachCounters, teach_dataset
from prompts.sets import prompt_set
from stages.context import RunContext
from stages.problems import Problem
from stages.progress import StageBoard
from stages.teachers import open_teachers
from store.batches import BatchRecord, batch_records
from store.calls import Store
from store.events import BudgetReached, DatasetStop, StageEnd, StageStart, TeacherModels

log = logging.getLogger(__name__)

# Feeds one dataset's mistakes into `send` and closes it when there are no more.
Producer = Callable[[MemoryObjectSendStream[Mistake]], Coroutine[Any, Any, None]]


@dataclass
class TeachResult:
    counters: dict[str, TeachCounters] = field(default_factory=dict)
    train_records: dict[str, int] = field(default_factory=dict)
    budget_reached: bool = False
    spent_usd: float = 0.0
    # Provider batches still open when teaching ended (results paid or to be paid, not collected yet).
    open_batches: list[BatchRecord] = field(default_factory=list)

    def problems(self) -> list[Problem]:
        """What each dataset left undone (nothing when every sample was decided with all its calls)."""
        found = []
        for task, c in self.counters.items():
            if c.incomplete:
                found.append(
                    Problem(
                        "incomplete",
                        f"{task}: {c.incomplete} samples ended with failed or unsent calls "
                        f"(e.g. {c.missing_examples[0]}); rerun the same command to retry only those",
                    )
                )
                found += [Problem("call_failed", f"{task}: {error}") for error in c.errors.values()]
            if c.not_started:
                found.append(
                    Problem(
                        "not_started",
                        f"{task}: {c.not_started} mistakes not started because the spending cap was reached",
                    )
                )
        return found + _open_batch_problems(self.open_batches)


def _open_batch_problems(records: Sequence[BatchRecord]) -> list[Problem]:
    by_teacher: dict[str, list[BatchRecord]] = {}
    for record in records:
        by_teacher.setdefault(record.teacher, []).append(record)
    return [
        Problem(
            "batches_open",
            f"teacher {teacher!r}: {len(open_)} batch{'es' if len(open_) > 1 else ''} still open at the provider "
            f"({', '.join(r.batch_id or f'{r.local_id} (not looked up yet)' for r in open_)}; "
            f"{sum(len(r.slots) for r in open_)} requests), which no sample of this run waited for: "
            "rerun the same command later to collect their answers (paid once they finish)",
        )
        for teacher, open_ in by_teacher.items()
    ]


def list_producer(mistakes: Sequence[Mistake]) -> Producer:
    """A producer for mistakes already in hand (imported, or from an earlier exam)."""

    async def produce(send: MemoryObjectSendStream[Mistake]) -> None:
        async with send:
            for m in mistakes:
                await send.send(m)

    return produce


def complete_ids(store: Store, task: str, committee: Committee) -> frozenset[str]:
    """Samples an earlier run decided with nothing missing, these teachers and these `[review]` settings.

    They are not asked again; any other stored sample is decided again from its
    stored answers, so a changed threshold or skip option takes effect on rerun.
    """
    teachers = [t.name for t in committee.asked]
    return frozenset(
        s.id
        for s in decode_samples(store.sample_bodies(task))
        if not s.missing and s.decided_with == committee.settings and [r.teacher for r in s.rationales] == teachers
    )


async def run_teach(
    ctx: RunContext,
    producers: dict[str, Producer],
    *,
    questions: Sequence[Question] = (),
    store: Store,
    board: StageBoard | None = None,
) -> TeachResult:
    """Decide every mistake the producers yield into the store, with a live display when `ctx.progress`.

    `board` gets the teach row: samples decided of those received, the total known once the exam (if any) ended.
    """
    cfg = ctx.cfg
    result = TeachResult()
    spent, possibly = committed_usd(store.connection)
    budget = Budget(cfg.review.max_usd, spent_usd=spent, possibly_usd=possibly)
    limiter = anyio.CapacityLimiter(cfg.review.samples_in_flight)
    parked = anyio.CapacityLimiter(PARKED_PER_SLOT * cfg.review.samples_in_flight)

    async def store_sample(sample: DecidedSample) -> None:
        position = int(sample.id) if sample.id.isdigit() else -1
        await store.add_sample(sample.task, sample.id, position, msgspec.json.encode(sample))

    async with open_teachers(cfg, store, budget, questions) as teachers:
        committee = Committee(teachers, cfg.review, store, prompt_set(cfg.run.prompts))
        await store.add_event(StageStart(stage="teach"))
        # Read by accounting.calibration: a later forecast learns from this store's teachers.
        await store.add_event(TeacherModels(models={t.name: t.model for t in cfg.teachers}))
        result.counters = {task: TeachCounters() for task in producers}
        if board is not None:
            board.start("teach", "samples", partial(_decided_of, result.counters, board))
        async with anyio.create_task_group() as outer:
            if ctx.progress:
                view = ProgressView(
                    {t.name: t.lane.stats for t in teachers},
                    prices={t.name: teacher_prices(t.section) for t in teachers},
                    datasets=result.counters,
                    batches=_open_batches(store) if any(t.mode == "batch" for t in cfg.teachers) else None,
                )
                outer.start_soon(view.run)
            async with anyio.create_task_group() as lanes:
                for teacher in teachers:
                    if teacher.batch is not None:
                        # Returns once the batches an earlier run left open count as in flight
                        # (engine/batch_lane.py), so no ask below sends one of their requests again.
                        await lanes.start(teacher.batch.run)
                async with anyio.create_task_group() as tg:
                    for task, produce in producers.items():
                        send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=64)
                        tg.start_soon(produce, send)
                        tg.start_soon(
                            partial(
                                teach_dataset,
                                committee,
                                recv,
                                limiter=limiter,
                                parked=parked,
                                done_ids=complete_ids(store, task, committee),
                                on_decided=store_sample,
                                counters=result.counters[task],
                                budget_reached=lambda: budget.reached,
                            )
                        )
                for teacher in teachers:
                    if teacher.batch is not None:
                        # Collects the batches that are done, leaves those still running at the provider and
                        # in the store for a rerun.
                        teacher.batch.close()
            outer.cancel_scope.cancel()
        # Every batch event is committed before the lane records the next step, so this is where each one stands.
        result.open_batches = batch_records(store.connection, open_only=True)
        if budget.reached:
            stopped = {
                task: DatasetStop(not_started=c.not_started, incomplete=c.incomplete)
                for task, c in result.counters.items()
            }
            await store.add_event(
                BudgetReached(max_usd=cfg.review.max_usd, spent_usd=budget.spent_usd, datasets=stopped)
            )
        await store.add_event(StageEnd(stage="teach"))
    if board is not None:
        board.finish("teach")
    result.budget_reached = budget.reached
    result.spent_usd = budget.spent_usd
    return result


def _open_batches(store: Store) -> Callable[[], list[BatchView]]:
    # The store's own connection: the display runs on the event loop, like the writer.
    return partial(batch_views, store.connection, open_only=True)


def _decided_of(counters: dict[str, TeachCounters], board: StageBoard) -> tuple[int, int | None]:
    decided = sum(c.decided for c in counters.values())
    # Until the exam ends more mistakes may arrive, so the total is not known yet.
    exam_running = "exam" in board.stages and not board.finished("exam")
    return decided, None if exam_running else sum(c.received for c in counters.values())


def write_dataset_files(ctx: RunContext, store: Store) -> dict[str, int]:
    """Rebuild dataset.jsonl and train.jsonl from the store; train records per task."""
    by_task = {d.task: decode_samples(store.sample_bodies(d.task)) for d in ctx.cfg.datasets}
    return write_outputs(
        by_task,
        ctx.out_dir,
        seed=ctx.cfg.run.seed,
        keep_all=ctx.cfg.review.keep_all_accepted,
        prompts=prompt_set(ctx.cfg.run.prompts),
    )
