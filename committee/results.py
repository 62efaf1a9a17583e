"""What a run leaves, typed: `RunResult` (paths, problems, the cost report, eval results) and the records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from core.errors import DataError
from core.jsonl import decode_lines
from core.records import RecordDecoder, TrainRecord
from core.samples import DecidedSample
from reports.cost import CostReport
from reports.run_report import read_evals
from stages.context import RunContext
from stages.evaluate import per_dataset_model_dirs, trained_model_dirs
from stages.job import JobResult, StageName
from stages.problems import Problem
from student.evaluate import EvalEntry

T = TypeVar("T")

# The command's exit codes for a run that ended: everything done, or something left undone (see `problems`).
EXIT_DONE, EXIT_INCOMPLETE = 0, 3


class RunPaths(msgspec.Struct, frozen=True, kw_only=True):
    """Where a run's outputs are (README, "What a run writes"); None for a file not written (yet)."""

    out_dir: Path
    # The config the run read; trainer processes read it too.
    config: Path
    # Every decided sample, and the instruction-tuning records of the included ones.
    dataset: Path | None
    train: Path | None
    # Trained students by checkpoint: "model", "model_dpo", or "models/<task>" with [train] per_dataset.
    models: dict[str, Path]
    # report.md (report.json beside it), cost_report.json, eval.json.
    report: Path | None
    cost_report: Path | None
    eval: Path | None


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What `committee.run` returns: how the run ended, where its outputs are, what it cost, how the student did.

    `exit_code` is the command's: 0 done, 3 something left undone (`problems` says what; rerunning the same
    stage retries only that). `cost` is cost_report.json decoded (None before any teacher call), `evals`
    eval.json's entries (accuracy with 95% intervals per task and checkpoint; empty before the eval stage).
    Paths are `pathlib.Path`s: `msgspec.json.encode(result, enc_hook=str)` writes a result as JSON.
    """

    stage: StageName
    exit_code: int
    problems: list[Problem]
    budget_reached: bool
    paths: RunPaths
    cost: CostReport | None
    evals: list[EvalEntry]


def run_result(ctx: RunContext, stage: StageName, job: JobResult) -> RunResult:
    """The RunResult of `stage` run on `ctx` from what `run_job` returned and the files it left."""
    out = ctx.out_dir
    cost_file = _existing(out / "cost_report.json")
    models = {path.name: path for path in trained_model_dirs(ctx)}
    models.update({f"models/{task}": path for task, path in per_dataset_model_dirs(ctx).items()})
    paths = RunPaths(
        out_dir=out,
        config=ctx.config_path,
        dataset=_existing(out / "dataset.jsonl"),
        train=_existing(out / "train.jsonl"),
        models=models,
        report=_existing(out / "report.md"),
        cost_report=cost_file,
        eval=_existing(out / "eval.json"),
    )
    return RunResult(
        stage=stage,
        exit_code=EXIT_INCOMPLETE if job.problems else EXIT_DONE,
        problems=list(job.problems),
        budget_reached=job.budget_reached,
        paths=paths,
        cost=_cost_report(cost_file) if cost_file else None,
        evals=read_evals(out / "eval.json"),
    )


def records(run: RunResult | str | os.PathLike[str]) -> Iterator[DecidedSample]:
    """Each decided sample in the run's dataset.jsonl (`run` is a RunResult or its out_dir), read as it is iterated.

    Raises `DataError` when there is no dataset.jsonl yet (run the teach stage first), and for a line that
    does not decode, naming the file and line.
    """
    return _read(_out_dir(run) / "dataset.jsonl", _SAMPLE, "decided sample")


def train_records(run: RunResult | str | os.PathLike[str]) -> Iterator[TrainRecord]:
    """Each instruction-tuning record in the run's train.jsonl, as `records` reads dataset.jsonl."""
    return _read(_out_dir(run) / "train.jsonl", _TRAIN_RECORD, "train record")


_SAMPLE = RecordDecoder(DecidedSample)
_TRAIN_RECORD = RecordDecoder(TrainRecord)
_COST_REPORT = msgspec.json.Decoder(CostReport)


def _read(path: Path, decoder: RecordDecoder[T], what: str) -> Iterator[T]:
    # Checked here, not at the first next(): a missing file is the caller's mistake, said where it is made.
    if not path.is_file():
        raise DataError(f"{path}: no such file; run the teach stage on this run directory first")
    return _lines(path, decoder, what)


def _lines(path: Path, decoder: RecordDecoder[T], what: str) -> Iterator[T]:
    with path.open("rb") as f:
        yield from decode_lines(path, f, decoder, what)


def _out_dir(run: RunResult | str | os.PathLike[str]) -> Path:
    return run.paths.out_dir if isinstance(run, RunResult) else Path(run)


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


def _cost_report(path: Path) -> CostReport:
    try:
        return _COST_REPORT.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise DataError(f"{path}: not a cost report: {exc}; rerun with stage='report' to rebuild it") from None
