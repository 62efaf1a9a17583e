"""The run's stages on one display: exam, teach, train, eval, report, each with its count, elapsed time and ETA.

Counts are read, not pushed: a stage registers a function that returns (done,
total) and the board calls it when it draws, from its own thread, so it keeps
moving while in-process training blocks the event loop. On a terminal it is a
rich live table; the teach stage's teacher table and the trainer's step bar nest
under it (rich draws nested live displays below the first one on the same
console). Elsewhere (CI, a log file) it logs one line when a stage starts and
ends, and at most one every `log_every_s` while it runs; so does `live=False`
(`run.py --no-progress`).

    with StageBoard(["exam", "teach"]) as board:
        board.start("exam", "questions", lambda: (meter.done, meter.asked or None))
        ...
        board.finish("exam")
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import msgspec
from rich import get_console
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from core.tables import fmt_duration

log = logging.getLogger(__name__)

Reader = Callable[[], tuple[float, int | None]]


class StageState(msgspec.Struct, kw_only=True):
    """One stage's row: its unit, how to read its count, and when it started and ended (monotonic seconds)."""

    unit: str = ""
    read: Reader | None = None
    started_at: float | None = None
    ended_at: float | None = None


class StageBoard:
    """The stages of one invocation, shown live on a terminal or as log lines elsewhere."""

    def __init__(
        self,
        stages: Sequence[str],
        *,
        live: bool = True,
        console: Console | None = None,
        log_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stages = {name: StageState() for name in stages}
        self.live = live
        self.console = console or get_console()
        self.log_every_s = log_every_s
        self._clock = clock
        self._live: Live | None = None
        self._stop = threading.Event()
        self._logger: threading.Thread | None = None

    # --- what stages call -------------------------------------------------------------

    def start(self, stage: str, unit: str = "", read: Reader | None = None) -> None:
        """Mark `stage` running; `read()` gives (done, total) in `unit`s, total None while unknown."""
        state = self.stages.setdefault(stage, StageState())
        state.unit, state.read, state.started_at, state.ended_at = unit, read, self._clock(), None
        if self._live is None:
            log.info("%s: started", stage)

    def finish(self, stage: str) -> None:
        """Mark `stage` done (a no-op for a stage never started)."""
        state = self.stages.get(stage)
        if state is None or state.started_at is None or state.ended_at is not None:
            return
        state.ended_at = self._clock()
        if self._live is None:
            log.info("%s", self.line(stage))

    def finished(self, stage: str) -> bool:
        """Whether `stage` has run to its end in this invocation."""
        state = self.stages.get(stage)
        return state is not None and state.ended_at is not None

    # --- figures ----------------------------------------------------------------------

    def count(self, stage: str) -> tuple[float, int | None]:
        """(done, total) of a running or finished stage; (0, None) when it has no reader."""
        state = self.stages[stage]
        return state.read() if state.read is not None else (0, None)

    def elapsed_s(self, stage: str) -> float | None:
        state = self.stages[stage]
        if state.started_at is None:
            return None
        return (state.ended_at if state.ended_at is not None else self._clock()) - state.started_at

    def eta_s(self, stage: str) -> float | None:
        """Seconds left at the rate so far; None before the first unit is done or while the total is unknown."""
        elapsed = self.elapsed_s(stage)
        if elapsed is None or self.stages[stage].ended_at is not None:
            return None
        done, total = self.count(stage)
        if total is None or done <= 0:
            return None
        return elapsed / done * max(0, total - done)

    def line(self, stage: str) -> str:
        """One line for logs, e.g. `exam: 12/32 answers, 1m05s, ETA 1m48s`."""
        state = self.stages[stage]
        if state.started_at is None:
            return f"{stage}: waiting"
        done, total = self.count(stage)
        counted = f"{int(done)}/{'?' if total is None else total} {state.unit}".rstrip() + ", " if state.read else ""
        elapsed = fmt_duration(self.elapsed_s(stage))
        if state.ended_at is not None:
            return f"{stage}: done, {counted}{elapsed}"
        eta = self.eta_s(stage)
        return f"{stage}: {counted}{elapsed}, ETA {'?' if eta is None else fmt_duration(eta)}"

    def render(self) -> Table:
        """The terminal view: one row per stage with a bar, the count, elapsed time and ETA."""
        table = Table(title="Run", title_justify="left", show_edge=False)
        for header in ("stage", "", "done", "elapsed", "ETA"):
            table.add_column(header, justify="left" if header in ("stage", "") else "right")
        for name, state in self.stages.items():
            if state.started_at is None:
                table.add_row(name, "", "waiting", "", "")
                continue
            done, total = self.count(name)
            finished = state.ended_at is not None
            bar_total = total if total else None
            bar = ProgressBar(total=bar_total, completed=done, width=24) if not finished else ProgressBar(1, 1, 24)
            eta = self.eta_s(name)
            table.add_row(
                name,
                bar,
                f"{int(done)}/{'?' if total is None else total} {state.unit}" if state.read else "",
                fmt_duration(self.elapsed_s(name)),
                "done" if finished else "?" if eta is None else fmt_duration(eta),
            )
        return table

    # --- showing it -------------------------------------------------------------------

    def __enter__(self) -> StageBoard:
        if self.live and self.console.is_terminal:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2)
            self._live.start()
        else:
            self._logger = threading.Thread(target=self._log_running, name="stage-board", daemon=True)
            self._logger.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._logger is not None:
            self._logger.join()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def pause(self) -> _Paused:
        """A block during which the live view is off (another process draws on the terminal)."""
        return _Paused(self)

    def _log_running(self) -> None:
        while not self._stop.wait(self.log_every_s):
            for name, state in self.stages.items():
                if state.started_at is not None and state.ended_at is None:
                    log.info("%s", self.line(name))


class _Paused:
    def __init__(self, board: StageBoard) -> None:
        self.board = board

    def __enter__(self) -> None:
        if self.board._live is not None:
            self.board._live.stop()

    def __exit__(self, *exc: object) -> None:
        if self.board._live is not None:
            self.board._live.start()
