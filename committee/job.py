"""A run driven from Python: `run` (blocking, Jupyter included) and `arun` (in the caller's event loop).

The command (`committee.cli`) runs through `run_checked`, as `arun` does, so Python and the command cannot drift apart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec

from committee.config import config_from
from committee.results import RunResult, run_result
from core.config import Config
from core.errors import ConfigError
from stages.context import RunContext
from stages.job import STAGES, StageName, preflight, run_job
from stages.lock import hold_run_dir
from trainer.launch import stop_off_main_thread

T = TypeVar("T")

# Where a run whose config has no file of its own (built in code) writes it, for trainer processes to read.
CONFIG_FILE = "config.json"


async def arun(
    cfg: Config,
    stage: StageName = "all",
    *,
    progress: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run every stage (`"all"`) or one (`"exam"`, `"teach"`, `"train"`, `"dpo"`, `"eval"`, `"report"`) in the
    running event loop, resuming from the run directory as the command does; returns what the run left.

    `cfg` is checked first (`config_from`, relative paths against `base_dir`). `config_path`: the file `cfg`
    was loaded from; without one the checked config is written to out_dir/config.json. `progress`: the live
    stage board (else a log line per stage and every 30 s, at INFO).

    Raises `ConfigError` / `DataError` (one line: what, where, what to do) before anything is paid for,
    `RunDirBusy` when another process runs on out_dir, `stages.terminate.Terminated` on SIGTERM. Cancelled
    (Ctrl-C), it lets the store commit what was answered and writes the reports before the cancellation goes on.

        result = await committee.arun(committee.load("run.toml"), stage="teach")
    """
    ctx = _checked_context(cfg, stage, progress=progress, config_path=config_path, base_dir=base_dir)
    return await run_checked(ctx, stage, write_config=config_path is None)


async def run_checked(ctx: RunContext, stage: StageName, *, write_config: bool) -> RunResult:
    """`arun` past its checks: for the command, whose config `load` checked and `preflight` passed already.

    `write_config`: write the config to `ctx.config_path` (a config built in code has no file of its own).
    """
    with hold_run_dir(ctx.out_dir):
        if write_config:
            # Under the lock: a second run on this directory must not rewrite it beneath the first.
            ctx.config_path.write_bytes(msgspec.json.format(msgspec.json.encode(ctx.cfg), indent=2) + b"\n")
        job = await run_job(ctx, stage)
    return run_result(ctx, stage, job)


def _checked_context(
    cfg: Config,
    stage: StageName,
    *,
    progress: bool,
    config_path: str | os.PathLike[str] | None,
    base_dir: str | os.PathLike[str] | None,
) -> RunContext:
    """The run's context once everything that needs no model and no network is checked (nothing is paid yet)."""
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r} is not a stage; use one of {', '.join(STAGES)}")
    cfg = config_from(cfg, base_dir=base_dir)
    path = Path(config_path).resolve() if config_path else Path(cfg.run.out_dir) / CONFIG_FILE
    ctx = RunContext(path, cfg, progress=progress)
    preflight(ctx, stage)
    return ctx


def run(
    cfg: Config,
    stage: StageName = "all",
    *,
    progress: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """`arun` for code without an event loop of its own, blocking until the run ends; same arguments, same errors.

    Called where an event loop is already running (a Jupyter cell), the run gets its own loop on a thread of
    its own, since loops do not nest; the notebook's interrupt stops it as Ctrl-C stops the command (what was
    answered is committed, training in this process stops at its next step boundary with a checkpoint, the
    reports are written, then KeyboardInterrupt). SIGTERM keeps its usual effect there (handlers are the main
    thread's).

        result = committee.run(committee.load("configs/demo.toml"))
        result.cost.total_usd, result.evals
    """
    call = partial(arun, cfg, stage, progress=progress, config_path=config_path, base_dir=base_dir)
    if _loop_running():
        return _run_on_own_thread(call)
    return anyio.run(call)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Stopper:
    """Cancels a body running on another thread's event loop, whenever asked: before it starts, while it runs
    (its cancel scope, through the loop), or after it ends (nothing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, anyio.CancelScope] | None = None
        self.stopped = False

    async def run(self, body: Callable[[], Awaitable[T]]) -> T | None:
        """`await body()`, or None when stopped."""
        with anyio.CancelScope() as scope:
            with self._lock:
                self._running = (asyncio.get_running_loop(), scope)
                if self.stopped:
                    scope.cancel()
            try:
                return await body()
            finally:
                with self._lock:
                    self._running = None
        return None

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self._running is not None:
                loop, scope = self._running
                # Never blocks: the loop may be busy (training in process) and picks it up when free.
                loop.call_soon_threadsafe(scope.cancel)
        # Training in process blocks that loop until it ends: it hears of the stop as it would of Ctrl-C.
        stop_off_main_thread(signal.SIGINT)


def _run_on_own_thread(call: Callable[[], Awaitable[T]]) -> T:
    stopper = _Stopper()
    outcome: list[T | None] = []
    failure: list[BaseException] = []
    # Waited on instead of Thread.join: an interrupted join marks the thread stopped while it still runs
    # (Python 3.11's bpo-45274 fix), and the wait after the stop would return at once.
    done = threading.Event()

    def main() -> None:
        try:
            outcome.append(anyio.run(stopper.run, call))
        except BaseException as exc:  # handed to the calling thread, which raises it
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=main, name="committee-run")
    try:
        # start() too: the interrupt may come before the run is under way, which the stopper then cancels at once.
        thread.start()
        done.wait()
    except KeyboardInterrupt:
        stopper.stop()
        # The run saves what was answered and writes its reports before it ends.
        done.wait()
        raise
    finally:
        if thread.is_alive():
            thread.join()  # its last instructions: the run has ended
    if failure:
        raise failure[0]
    result = outcome[0]
    assert result is not None, "only a stop returns nothing, and a stop raised KeyboardInterrupt above"
    return result
