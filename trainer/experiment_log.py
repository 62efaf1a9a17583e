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

from accounting.ledger import Series
from core.config import Config, LoggerName
from core.errors import ConfigError

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
        import wandb  # pyright: ignore[reportMissingImports]  # the [wandb] extra, which CI does not install

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
        for i, (t, value) in enumerate(zip(series.t_s, series.values, strict=True)):
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
