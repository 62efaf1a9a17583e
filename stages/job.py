"""A whole run, or one stage of it, from one config: what `run.py` calls.

`all` streams the exam into the teachers (teachers start on the first mistakes
while the student is still answering), then writes the dataset, trains, evaluates
and reports. Every stage resumes from the run directory, so rerunning a finished
run sends nothing and rerunning a killed one continues where it stopped.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from core.records import question_from
from dataset.preferences import write_preferences
from reports.hub import check_hub
from stages.context import RunContext
from stages.evaluate import run_eval_stage
from stages.exam import Exam, load_student, merge_mistake_files, open_answers, run_exam_stage
from stages.problems import NOTHING_TO_TRAIN, Problem
from stages.report import write_reports
from stages.sources import mistakes_for_teach, train_questions
from stages.teach import Producer, TeachResult, list_producer, run_teach, write_dataset_files
from stages.teachers import check_teachers
from stages.terminate import Terminated, stop_on_sigterm
from store.calls import Store
from trainer.experiment_log import check_loggers

log = logging.getLogger(__name__)

StageName = Literal["all", "exam", "teach", "train", "dpo", "eval", "report"]
STAGES: tuple[StageName, ...] = ("all", "exam", "teach", "train", "dpo", "eval", "report")


@dataclass
class JobResult:
    """What a run left undone, as `Problem`s (test their kind); empty means everything finished."""

    problems: list[Problem] = field(default_factory=list)
    budget_reached: bool = False
    # The signal that stopped training at a step boundary, if one did.
    stopped_by: int | None = None


async def run_job(ctx: RunContext, stage: StageName) -> JobResult:
    """Run `stage` (or all of them) and return what is left undone.

    SIGTERM (a batch scheduler, `docker stop`, `kill`) stops the run the way Ctrl-C
    does: calls in flight are cancelled and recorded, the store commits everything
    queued, the reports are written, then `Terminated` is raised. After Ctrl-C the
    reports are written too, and the KeyboardInterrupt goes on.
    """
    ctx.prepare()
    stopped = partial(write_reports, ctx, quiet=True)
    result = await stop_on_sigterm(partial(_run_stages, ctx, stage), stopped)
    # Training stopped at a step boundary: the trainer had the signal, not the event loop.
    if result.stopped_by == signal.SIGTERM:
        stopped()
        raise Terminated
    if result.stopped_by == signal.SIGINT:
        stopped()
        raise KeyboardInterrupt
    return result


async def _run_stages(ctx: RunContext, stage: StageName) -> JobResult:
    result = JobResult()
    if stage == "exam":
        await run_exam_stage(ctx)
    if stage in ("teach", "all"):
        teach = await _teach(ctx, with_exam=stage == "all")
        result.problems += teach.problems()
        result.budget_reached = teach.budget_reached
        write_preferences(ctx.out_dir, ctx.cfg.dpo.min_margin)
    if stage in ("train", "all") and not result.problems:
        result.problems += _train(ctx, result)
        if result.stopped_by is not None:
            return result
    if (stage == "dpo" or (stage == "all" and ctx.cfg.dpo.enabled)) and not result.problems:
        result.problems += _train(ctx, result, objective="dpo")
        if result.stopped_by is not None:
            return result
    # With nothing trained there is still the base student to evaluate.
    if stage in ("eval", "all") and all(p.kind == "nothing_to_train" for p in result.problems):
        await run_eval_stage(ctx)
    if stage in ("teach", "all", "report"):
        write_reports(ctx)
    elif stage in ("exam", "train", "dpo", "eval"):
        write_reports(ctx, quiet=True)
    return result


def preflight(ctx: RunContext, stage: StageName) -> None:
    """Checks that need no model and no network, run before anything is paid for."""
    if stage in ("teach", "all"):
        check_teachers(ctx.cfg)
    check_loggers(ctx.cfg.run.log_to)
    if stage in ("teach", "all", "report"):
        check_hub(ctx.cfg)
    if stage in ("train", "dpo", "all"):
        from trainer.lora import check_lora_setup

        check_lora_setup(ctx.cfg.train)


async def _teach(ctx: RunContext, *, with_exam: bool) -> TeachResult:
    cfg = ctx.cfg
    producers: dict[str, Producer] = {}
    questions = []
    exam_tasks = []
    # Read all data first: a missing file or a malformed line fails before any call.
    for d in cfg.datasets:
        if with_exam and not d.mistakes:
            qs = train_questions(d)
            questions += qs
            exam_tasks.append((d, qs))
        else:
            mistakes = mistakes_for_teach(d, ctx.out_dir)
            questions += map(question_from, mistakes)
            producers[d.task] = list_producer(mistakes)

    backend = load_student(ctx) if exam_tasks else None
    try:
        with open_answers(ctx) as answers:
            if backend is not None:  # loaded exactly when some dataset sits the exam
                exam = Exam(ctx, backend, answers)
                for d, qs in exam_tasks:
                    producers[d.task] = exam.producer(d, qs)
            async with Store.open(ctx.store_path) as store:
                result = await run_teach(ctx, producers, questions=questions, store=store)
                counts = write_dataset_files(ctx, store)
    finally:
        if backend is not None:
            await backend.close()
    if exam_tasks:
        merge_mistake_files(ctx.out_dir, [d.task for d, _ in exam_tasks])
    result.train_records = counts
    return result


def _train(ctx: RunContext, result: JobResult, objective: Literal["sft", "dpo"] = "sft") -> list[Problem]:
    from student.models import resolve_model
    from trainer.launch import launch

    train_file = ctx.out_dir / "train.jsonl"
    if objective == "sft" and train_file.exists() and not train_file.read_bytes().strip():
        return [NOTHING_TO_TRAIN]
    # A hub-id student is downloaded here, once, before any training process starts.
    resolve_model(ctx.cfg.student.model)
    if objective == "sft" and ctx.cfg.train.per_dataset:
        return _train_per_dataset(ctx, result, train_file)
    # Training blocks the event loop, so Ctrl-C and SIGTERM are the trainer's to handle
    # meanwhile (launch() takes them over for the whole call, setup included): it stops
    # once setup ends or at a step boundary, saves a checkpoint (SFT), and says so.
    code = launch(ctx.config_path, ctx.cfg, objective)
    if _stopped(code, result):
        return []
    stage = "training" if objective == "sft" else "the dpo stage"
    if code == 0:
        return []
    return [Problem("training_failed", f"{stage} exited with code {code}; see the log above, then rerun to resume")]


def _train_per_dataset(ctx: RunContext, result: JobResult, train_file) -> list[Problem]:
    """One student per benchmark, one after another (each may use every process)."""
    from dataset.writer import record_tasks
    from trainer.launch import launch

    have = record_tasks(train_file)
    problems: list[Problem] = []
    for d in ctx.cfg.datasets:
        if d.task not in have:
            log.warning("no %s sample was included, so %s gets no student of its own", d.task, d.task)
            continue
        code = launch(ctx.config_path, ctx.cfg, "sft", task=d.task)
        if _stopped(code, result):
            return problems  # the students after this one are trained by the rerun
        if code:
            problems.append(
                Problem(
                    "training_failed",
                    f"training the {d.task} student exited with code {code}; see the log above, then rerun",
                )
            )
    return problems


def _stopped(code: int, result: JobResult) -> bool:
    """Whether training ended on Ctrl-C or SIGTERM (at a step boundary); records which in `result`."""
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        result.stopped_by = code - 128
        return True
    return False
