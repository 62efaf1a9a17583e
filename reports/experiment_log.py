"""Experiment logging to TensorBoard and Weights & Biases (`[run] log_to`), both optional packages.

Training writes its per-step scalars here as it goes (rank 0 only); the teach
stage's figures are written once, after it, from the run report (which is built
from the store), so the live teach path never waits on a logger. Each writer gets
the config attached. TensorBoard event files go to `out_dir/tensorboard/<job>/`;
W&B runs offline into `out_dir/wandb/` unless `WANDB_MODE` says otherwise (then
`wandb sync` uploads them), so neither needs a network.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import msgspec

from engine.config import Config, LoggerName
from engine.errors import ConfigError
from engine.ledger import Series, call_rate
from reports.run_report import RunReport

log = logging.getLogger(__name__)

_PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
}


def check_loggers(names: tuple[LoggerName, ...]) -> None:
    """`ConfigError` (one line) for the first logger in `[run] log_to` whose package is not installed."""
    for name in names:
        module, install = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"[run].log_to: {name!r} is not installed; {install}, or remove it from log_to")


class _Sink(Protocol):
    def scalar(self, tag: str, value: float, step: int, wall_time: float | None) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    __slots__ = ("_writer",)

    def __init__(self, log_dir: Path, config_json: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))
        # Markdown code block: TensorBoard's text plugin renders it as written.
        self._writer.add_text("config", "```\n" + config_json + "\n```", 0)

    def scalar(self, tag: str, value: float, step: int, wall_time: float | None) -> None:
        self._writer.add_scalar(tag, value, step, walltime=wall_time)

    def close(self) -> None:
        self._writer.close()


class _WandB:
    __slots__ = ("_run",)

    def __init__(self, out_dir: Path, job: str, cfg: Config) -> None:
        import wandb

        self._run = wandb.init(
            project="committee",
            group=cfg.run.name,
            name=f"{cfg.run.name}-{job}",
            job_type=job,
            dir=str(out_dir),
            config=msgspec.to_builtins(cfg),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit="create_new",
        )
        # Teach series and summaries are not in step order; a job's own step key keeps W&B from dropping them.
        self._run.define_metric(f"{job}/step")
        self._run.define_metric(f"{job}/*", step_metric=f"{job}/step")

    def scalar(self, tag: str, value: float, step: int, wall_time: float | None) -> None:
        self._run.log({tag: value, f"{tag.split('/')[0]}/step": step})

    def close(self) -> None:
        self._run.finish()


class ExperimentLog:
    """The loggers `[run] log_to` names, for one job (`train`, `dpo` or `teach`); none means every call is a no-op.

        with ExperimentLog.open(cfg, "train", enabled=rank == 0) as xlog:
            xlog.scalars("train", {"loss": 1.2, "lr": 1e-5}, step=1)
    """

    __slots__ = ("_sinks",)

    def __init__(self, sinks: list[_Sink]) -> None:
        self._sinks = sinks

    @classmethod
    def open(cls, cfg: Config, job: str, *, enabled: bool = True) -> ExperimentLog:
        """Open a writer per logger in `[run] log_to` (nothing when `enabled` is False: other ranks)."""
        if not enabled or not cfg.run.log_to:
            return cls([])
        check_loggers(cfg.run.log_to)
        config_json = json.dumps(msgspec.to_builtins(cfg), indent=2)
        sinks: list[_Sink] = []
        for name in cfg.run.log_to:
            if name == "tensorboard":
                sinks.append(_TensorBoard(cfg.out_dir / "tensorboard" / job, config_json))
            else:
                sinks.append(_WandB(cfg.out_dir, job, cfg))
        log.info("experiment log: %s for %s", ", ".join(cfg.run.log_to), job)
        return cls(sinks)

    def scalars(
        self, prefix: str, values: Mapping[str, float | int | None], step: int, wall_time: float | None = None
    ) -> None:
        """Log `prefix/name` for each value that is not None, at `step`."""
        for name, value in values.items():
            if value is not None:
                for sink in self._sinks:
                    sink.scalar(f"{prefix}/{name}", float(value), step, wall_time)

    def series(self, tag: str, series: Series) -> None:
        """A time series (e.g. calls/s per teacher): one point per bucket, at its wall-clock time."""
        for i, (t, value) in enumerate(zip(series.t_s, series.values)):
            for sink in self._sinks:
                sink.scalar(tag, value, i, series.start + t)

    def close(self) -> None:
        """Flush and close every writer."""
        for sink in self._sinks:
            sink.close()

    def __enter__(self) -> ExperimentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_teach_metrics(cfg: Config, report: RunReport) -> None:
    """Write the teach stage's figures to `[run] log_to`, from the report and the store (nothing when unset).

    Per teacher: calls/s over the run with its RPM limit as a second line (both per
    second, so they share an axis), requests/min and the share of its limit used,
    HTTP 429s, USD; per dataset and teacher: acceptance rate; per dataset: USD,
    included samples, USD per included sample.
    """
    if not cfg.run.log_to:
        return
    from reports.cost import STORE_FILE, ledger_connection

    db = cfg.out_dir / STORE_FILE
    rates: dict[str, Series] = {}
    if db.is_file():
        conn = ledger_connection(db)
        try:
            rates = call_rate(conn)
        finally:
            conn.close()
    limits = {t.name: t.rpm for t in cfg.teachers}
    with ExperimentLog.open(cfg, "teach") as xlog:
        for teacher, series in rates.items():
            xlog.series(f"teach/{teacher}/calls_per_s", series)
            if limits.get(teacher):
                limit = Series(start=series.start, t_s=series.t_s, values=[limits[teacher] / 60.0] * len(series.t_s))
                xlog.series(f"teach/{teacher}/rpm_limit_per_s", limit)
        for rate in report.teachers:
            usage = {"requests_per_min": rate.requests_per_min, "rpm_used": rate.rpm_used,
                     "tokens_per_min": rate.tokens_per_min, "tpm_used": rate.tpm_used}  # fmt: skip
            xlog.scalars(f"teach/{rate.teacher}", usage, 0)
        for section in report.datasets:
            cost = section.cost
            if cost is None:
                continue
            for teacher in sorted({r.teacher for r in cost.rows}):
                rows = [r for r in cost.rows if r.teacher == teacher]
                usd = sum(r.usd for r in rows if r.usd is not None) if any(r.usd is not None for r in rows) else None
                xlog.scalars(f"teach/{section.task}/{teacher}", {
                    "http_429": sum(r.http_429 for r in rows), "usd": usd, "calls": sum(r.calls for r in rows),
                    "acceptance": cost.acceptance[teacher].rate if teacher in cost.acceptance else None,
                }, 0)  # fmt: skip
            xlog.scalars(f"teach/{section.task}", {"usd": cost.total.usd, "included": cost.included,
                                                   "usd_per_included": cost.usd_per_included}, 0)  # fmt: skip
