"""`--dry-run [--pilot N] [--calibrate-from DIR]`: what a run would send, cost and take.

Each dataset's work is its mistakes when they are known (imported, or from an
earlier exam of this run), else its training questions with an assumed share of
mistakes (`--mistake-rate`, default 1.0: the upper bound).

Without a pilot nothing is sent: output lengths and latencies come from what this
run's store (then `--calibrate-from`'s) measured for the same teacher model, task
and stage, else per-stage defaults.

With `--pilot N`, N mistakes per dataset (drawn with the run seed) go through the
ordinary teach stage first, so their answers land in the store and the real run
never buys them again; the forecast is extrapolated from what they cost. A
dataset with no mistakes yet is examined first, in a seeded random order, until
N mistakes are found; the student's answers are stored, so the real exam reuses
them, and the share of wrong answers sets the dataset's expected mistakes.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import anyio
from rich.console import Console

from accounting.calibration import History, open_run_store, pilot_samples, read_history
from accounting.forecast import STAGES, Forecast, forecast, print_forecast
from accounting.ledger import committed_usd
from accounting.pilot import Pilot, Total, estimate_count
from accounting.pricing import warn_if_stale
from core.config import DatasetSection, effective_batch_warning
from core.errors import ConfigError
from core.records import Mistake, Question, question_from
from core.tables import fmt_usd
from dataset.writer import decode_samples
from prompts.sets import prompt_set
from reports.run_report import open_teacher_ledger
from stages.context import RunContext
from stages.sources import exam_mistakes, mistakes_for_teach, train_questions
from stages.teach import list_producer, run_teach
from store.calls import Store, open_db, sample_bodies

log = logging.getLogger(__name__)


def _work(ctx: RunContext) -> dict[str, list[Mistake] | list[Question]]:
    work: dict[str, list[Mistake] | list[Question]] = {}
    for d in ctx.cfg.datasets:
        if d.mistakes:
            work[d.task] = mistakes_for_teach(d, ctx.out_dir)
        elif (ctx.out_dir / "mistakes.jsonl").exists():
            work[d.task] = exam_mistakes(ctx.out_dir, d.task)
        else:
            work[d.task] = train_questions(d)
    return work


def _histories(ctx: RunContext, calibrate_from: Path | None) -> list[History]:
    """What this run's store, then `calibrate_from`'s, measured (teachers of the same name are the same model)."""
    names = {t.name: t.model for t in ctx.cfg.teachers}
    out = []
    # Read-only: a dry run may look at a run directory another run is using (it takes no lock).
    conn = open_teacher_ledger(ctx.out_dir)
    if conn is not None:
        try:
            out.append(read_history(conn, "store", names))
        finally:
            conn.close()
    if calibrate_from is not None:
        conn = open_run_store(calibrate_from)
        try:
            out.append(read_history(conn, f"store of {calibrate_from}", names))
        finally:
            conn.close()
    return out


def dry_run(
    ctx: RunContext, *, mistake_rate: float = 1.0, calibrate_from: Path | None = None, console: Console | None = None
) -> Forecast:
    """Print (and return) the forecast; sends nothing and writes only forecast.json into an existing run dir."""
    history = _histories(ctx, calibrate_from)
    warn_if_stale(date.today())
    fc = forecast(ctx.cfg, _work(ctx), mistake_rate=mistake_rate, history=history)
    console = console or Console()
    print_forecast(fc, console, ctx.out_dir)
    for line in student_plan(ctx):
        console.print(line)
    return fc


def _complete(bodies: list[bytes]) -> frozenset[str]:
    """Ids of the stored samples decided with nothing missing."""
    return frozenset(s.id for s in decode_samples(bodies) if not s.missing)


def student_plan(ctx: RunContext) -> list[str]:
    """What the train stage will produce: one line per student, where it goes and what it learns from."""
    cfg = ctx.cfg
    base = cfg.student.model
    warning = effective_batch_warning(cfg.train)
    if cfg.train.per_dataset:
        lines = [
            f"student {d.task}: {base} -> {ctx.out_dir / 'models' / d.task} (its own records, its own test split)"
            for d in cfg.datasets
        ]
    else:
        tasks = ", ".join(d.task for d in cfg.datasets)
        lines = [f"student: {base} -> {ctx.out_dir / 'model'} (the union of {tasks})"]
    return lines + ([f"warning: {warning}"] if warning else [])


def _draw(items: Sequence[Mistake], n: int, seed: int, task: str) -> list[Mistake]:
    """`n` of `items` drawn with the run seed, in their original order.

    The first `n` of one seeded shuffle, so a larger pilot contains a smaller one
    and rerunning with a larger N buys only the difference.
    """
    order = list(range(len(items)))
    random.Random(f"{seed}/pilot/{task}").shuffle(order)
    picked = set(order[:n])
    return [m for i, m in enumerate(items) if i in picked]


async def pilot_dry_run(
    ctx: RunContext, n: int, *, calibrate_from: Path | None = None, console: Console | None = None
) -> Forecast:
    """Send the whole FAIR graph for `n` mistakes per dataset, then print (and return) the extrapolated forecast.

    Raises ConfigError, before anything is sent, when the pilot's own worst case
    (every answer `max_tokens` long) would pass `review.max_usd`.
    """
    cfg = ctx.cfg
    console = console or Console()
    ctx.prepare()
    history = _histories(ctx, calibrate_from)  # a --calibrate-from that is not a run fails before any call
    work = _work(ctx)
    mistakes = {task: [m for m in items if isinstance(m, Mistake)] for task, items in work.items()}
    counts: dict[str, Total] = {}
    exam_tasks = [d for d in cfg.datasets if any(isinstance(q, Question) for q in work[d.task])]
    if exam_tasks:
        for task, (found, expected) in (await _exam_until(ctx, exam_tasks, n)).items():
            mistakes[task], counts[task] = found, expected
    samples: dict[str, list[Mistake]] = {}
    for d in cfg.datasets:
        if n > len(mistakes[d.task]):
            console.print(
                f"--pilot {n}: {d.task} has only {len(mistakes[d.task])} mistakes; the pilot uses all of them"
            )
        samples[d.task] = _draw(mistakes[d.task], n, cfg.run.seed, d.task)

    _check_pilot_cap(ctx, n, samples)
    async with Store.open(ctx.store_path) as store:
        questions = [question_from(m) for ms in samples.values() for m in ms]
        result = await run_teach(
            ctx, {t: list_producer(ms) for t, ms in samples.items()}, questions=questions, store=store
        )
        decided = {t: _complete(store.sample_bodies(t)) for t in samples}
    for problem in result.problems():
        console.print(f"pilot incomplete: {problem.message}")

    conn = open_db(ctx.store_path)
    try:
        pilots = {}
        for task, ms in samples.items():
            ids = [m.id for m in ms if m.id in decided[task]]
            if not ms:
                continue  # no mistakes at all: nothing to teach, nothing to forecast
            if not ids:
                raise ConfigError(
                    f"--pilot {n}: no pilot sample of {task} was decided completely, so there is "
                    "nothing to extrapolate from; see the lines above, then rerun"
                )
            pilots[task] = Pilot(task=task, sample_ids=ids, calls=pilot_samples(conn, task, ids))
    finally:
        conn.close()
    fc = forecast(cfg, mistakes, mistakes=counts, history=history, pilots=pilots)
    print_forecast(fc, console, ctx.out_dir)
    return fc


def _check_pilot_cap(ctx: RunContext, n: int, samples: dict[str, list[Mistake]]) -> None:
    """One line, nothing sent, when the pilot's worst case plus what is spent already passes the cap."""
    cap = ctx.cfg.review.max_usd
    if cap is None:
        return
    conn = open_teacher_ledger(ctx.out_dir)
    done: dict[str, frozenset[str]] = {t: frozenset() for t in samples}
    spent = 0.0
    if conn is not None:
        try:
            done = {t: _complete(sample_bodies(conn, t)) for t in samples}
            # What earlier runs may have been billed counts against the cap, as in the run itself.
            spent = sum(committed_usd(conn))
        finally:
            conn.close()
    todo = {t: [m for m in ms if m.id not in done[t]] for t, ms in samples.items()}
    worst = forecast(ctx.cfg, todo, output_tokens=dict.fromkeys(STAGES, math.inf)).usd
    if worst is not None and spent + worst > cap:
        raise ConfigError(
            f"--pilot {n}: the pilot's worst case ({fmt_usd(worst)}, every answer max_tokens long) plus "
            f"{fmt_usd(spent)} already spent passes review.max_usd ({fmt_usd(cap)}); nothing was sent; "
            "lower --pilot or raise review.max_usd"
        )


async def _exam_until(
    ctx: RunContext, datasets: Sequence[DatasetSection], n: int
) -> dict[str, tuple[list[Mistake], Total]]:
    """Examine each dataset's questions in a seeded random order until `n` mistakes are found.

    Returns per task the mistakes found and the mistakes expected over all its
    questions (questions x the share answered wrong, with its 90% interval). The
    answers are stored, so the real exam asks the student none of them again.
    """
    from stages.exam import Exam, load_student, open_answers
    from student.exam import run_exam

    out: dict[str, tuple[list[Mistake], Total]] = {}
    backend = load_student(ctx)
    try:
        with open_answers(ctx) as answers:
            exam = Exam(ctx, backend, answers)
            for d in datasets:
                questions = train_questions(d)
                order = list(questions)
                random.Random(f"{ctx.cfg.run.seed}/pilot-exam/{d.task}").shuffle(order)
                found: list[Mistake] = []
                examined = 0
                chunk = max(n, ctx.cfg.student.batch_size)
                while len(found) < n and examined < len(order):
                    batch = order[examined : examined + chunk]
                    examined += len(batch)
                    send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=len(batch))
                    await run_exam(
                        batch, backend, answers, exam.fmt, send=send, prompts=prompt_set(ctx.cfg.run.prompts)
                    )
                    async with recv:
                        found += [m async for m in recv]
                expected = estimate_count(len(found), examined, len(questions))
                log.info(
                    "pilot exam of %s: %d mistakes in %d of %d questions", d.task, len(found), examined, len(questions)
                )
                out[d.task] = (found, expected)
    finally:
        await backend.close()
    return out
