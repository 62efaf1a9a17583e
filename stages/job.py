"""A whole run, or one stage of it, from one config: what `run.py` calls.

`all` streams the exam into the teachers (teachers start on the first mistakes
while the student is still answering), then writes the dataset, trains, evaluates
and reports. Every stage resumes from the run directory, so rerunning a finished
run sends nothing and rerunning a killed one continues where it stopped.
"""

from __future__ import annotations

import logging
import signal
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from core.records import question_from
from core.timings import start_run, timed
from dataset.preferences import write_preferences
from prompts.sets import student_templates
from reports.hub import check_hub
from stages.context import RunContext
from stages.evaluate import run_eval_stage
from stages.exam import Exam, load_student, merge_mistake_files, open_answers, run_exam_stage
from stages.problems import NOTHING_TO_TRAIN, Problem
from stages.progress import StageBoard
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
    start_run()
    stopped = partial(write_reports, ctx, quiet=True)
    with StageBoard(board_stages(ctx, stage), live=ctx.progress) as board:
        result = await stop_on_sigterm(partial(_run_stages, ctx, stage, board), stopped)
    # Training stopped at a step boundary: the trainer had the signal, not the event loop.
    if result.stopped_by == signal.SIGTERM:
        stopped()
        raise Terminated
    if result.stopped_by == signal.SIGINT:
        stopped()
        raise KeyboardInterrupt
    return result


def board_stages(ctx: RunContext, stage: StageName) -> list[str]:
    """The stages this invocation runs, in order, as the progress display lists them."""
    if stage != "all":
        return [stage]
    exam = ["exam"] if any(not d.mistakes for d in ctx.cfg.datasets) else []
    return [*exam, "teach", "train", *(["dpo"] if ctx.cfg.dpo.enabled else []), "eval", "report"]


async def _run_stages(ctx: RunContext, stage: StageName, board: StageBoard) -> JobResult:
    result = JobResult()
    if stage == "exam":
        await run_exam_stage(ctx, board)
    if stage in ("teach", "all"):
        teach = await _teach(ctx, board, with_exam=stage == "all")
        result.problems += teach.problems()
        result.budget_reached = teach.budget_reached
        write_preferences(ctx.out_dir, ctx.cfg.dpo.min_margin, student_templates(ctx.cfg.run.prompts))
    if stage in ("train", "all") and not result.problems:
        result.problems += _train(ctx, result, board)
        if result.stopped_by is not None:
            return result
    if (stage == "dpo" or (stage == "all" and ctx.cfg.dpo.enabled)) and not result.problems:
        result.problems += _train(ctx, result, board, objective="dpo")
        if result.stopped_by is not None:
            return result
    # With nothing trained there is still the base student to evaluate.
    if stage in ("eval", "all") and all(p.kind == "nothing_to_train" for p in result.problems):
        await run_eval_stage(ctx, board)
    board.start("report")
    # Recorded after the report is written: the next report shows it, this one cannot.
    with timed(ctx.out_dir, "report"):
        # After exam, train or eval alone the teach figures and the data are as they were: a quiet report.
        write_reports(ctx, quiet=stage not in ("teach", "all", "report"))
    board.finish("report")
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


async def _teach(ctx: RunContext, board: StageBoard, *, with_exam: bool) -> TeachResult:
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
            exam = Exam(ctx, backend, answers, board=board, datasets=len(exam_tasks)) if backend is not None else None
            if exam is not None:  # loaded exactly when some dataset sits the exam
                for d, qs in exam_tasks:
                    producers[d.task] = exam.producer(d, qs)
            with timed(ctx.out_dir, "teach") as meter:
                meter.note = "streams beside the exam" if exam_tasks else ""
                async with Store.open(ctx.store_path) as store:
                    result = await run_teach(ctx, producers, questions=questions, store=store, board=board)
                    counts = write_dataset_files(ctx, store)
    finally:
        if backend is not None:
            await backend.close()
    if exam_tasks:
        merge_mistake_files(ctx.out_dir, [d.task for d, _ in exam_tasks])
    result.train_records = counts
    return result


def _train(
    ctx: RunContext, result: JobResult, board: StageBoard, objective: Literal["sft", "dpo"] = "sft"
) -> list[Problem]:
    from student.models import resolve_model

    train_file = ctx.out_dir / "train.jsonl"
    if objective == "sft" and train_file.exists() and not train_file.read_bytes().strip():
        return [NOTHING_TO_TRAIN]
    # A hub-id student is downloaded here, once, before any training process starts.
    resolve_model(ctx.cfg.student.model)
    stage = "train" if objective == "sft" else "dpo"
    log_file = ctx.out_dir / ("train_log.jsonl" if objective == "sft" else "dpo_log.jsonl")
    board.start(stage, "steps", lambda: (logged_steps(log_file), ctx.cfg.train.max_steps))
    try:
        # Trainer processes draw their own step bar on the terminal: the live board gives way meanwhile.
        with board.pause() if _in_subprocesses(ctx) else nullcontext(), timed(ctx.out_dir, stage):
            if objective == "sft" and ctx.cfg.train.per_dataset:
                return _train_per_dataset(ctx, result, train_file)
            return _train_once(ctx, result, objective)
    finally:
        board.finish(stage)


def _in_subprocesses(ctx: RunContext) -> bool:
    return ctx.cfg.train.num_processes > 1 or bool(ctx.cfg.train.hostfile)


def logged_steps(log_file: Path) -> int:
    """Optimizer steps the trainer has logged so far (one line each)."""
    try:
        with log_file.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _train_once(ctx: RunContext, result: JobResult, objective: Literal["sft", "dpo"]) -> list[Problem]:
    from trainer.launch import launch

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
