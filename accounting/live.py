"""The live progress display of the teach stage: per teacher calls, rates, 429s and USD; per dataset samples;
batches in flight with their state, counts and age.

It only reads counters the lanes and the scheduler keep anyway (`lane.stats`,
the scheduler's per-dataset counts), a few times a second from its own task:
nothing on the hot path waits for it. On a terminal it is a rich Live table;
elsewhere (CI, a log file) it logs one summary line every ~10 s instead.

Use as::

    view = ProgressView({"gpt": lane.stats, ...}, prices={"gpt": teacher_prices(section)},
                        datasets={"svamp": counters})
    async with anyio.create_task_group() as tg:
        tg.start_soon(view.run)
        ...                      # the teach stage
        tg.cancel_scope.cancel()  # the display draws (or logs) a last time and ends
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import anyio
import msgspec
from rich import get_console
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from accounting.batch_counts import BatchView
from accounting.pricing import Prices, cost_usd
from core.tables import fmt_duration

log = logging.getLogger(__name__)


class LaneCounters(Protocol):
    """What the display reads of a lane's stats (engine.lane.LaneStats has these)."""

    started: int
    completed: int
    failed: int
    in_flight: int
    cap: float
    http_429: int
    retries: int
    input_tokens: int
    output_tokens: int


class SampleCounters(Protocol):
    """What the display reads of a dataset's counts (engine.scheduler.TeachCounters has these)."""

    received: int
    decided: int


class TeacherLine(msgspec.Struct, kw_only=True):
    """One teacher's figures at one moment; rates over the last few seconds."""

    teacher: str
    done: int
    failed: int
    in_flight: int
    cap: float
    req_per_s: float
    tokens_per_s: float
    http_429: int
    retries: int
    usd: float | None


class ProgressView:
    """Rates and totals from live counters; `run()` shows them until cancelled."""

    def __init__(
        self,
        lanes: Mapping[str, LaneCounters],
        *,
        prices: Mapping[str, Prices | None] | None = None,
        datasets: Mapping[str, SampleCounters] | None = None,
        totals: Mapping[str, int | None] | None = None,
        batches: Callable[[], Sequence[BatchView]] | None = None,
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`batches` returns the batches in flight (e.g. `batch_views(conn, open_only=True)`), read at each draw."""
        self.lanes = lanes
        self.batches = batches
        self.prices = prices or {}
        self.datasets = datasets or {}
        self.totals = totals or {}
        self.window_s = window_s
        self._clock = clock
        # Per teacher: (time, finished calls, tokens) samples over the rate window.
        self._history: dict[str, deque[tuple[float, int, int]]] = {name: deque() for name in lanes}

    def snapshot(self) -> list[TeacherLine]:
        """Current figures per teacher, rates measured since the oldest sample in the window."""
        now = self._clock()
        lines = []
        for name, s in self.lanes.items():
            finished, tokens = s.completed + s.failed, s.input_tokens + s.output_tokens
            history = self._history[name]
            history.append((now, finished, tokens))
            while len(history) > 2 and now - history[1][0] >= self.window_s:
                history.popleft()
            t0, finished0, tokens0 = history[0]
            span = now - t0
            lines.append(
                TeacherLine(
                    teacher=name,
                    done=s.completed,
                    failed=s.failed,
                    in_flight=s.in_flight,
                    cap=s.cap,
                    req_per_s=(finished - finished0) / span if span > 0 else 0.0,
                    tokens_per_s=(tokens - tokens0) / span if span > 0 else 0.0,
                    http_429=s.http_429,
                    retries=s.retries,
                    usd=cost_usd(self.prices.get(name), s.input_tokens, s.output_tokens),
                )
            )
        return lines

    def _samples(self) -> list[tuple[str, int, int, int | None]]:
        return [(task, c.decided, c.received, self.totals.get(task)) for task, c in self.datasets.items()]

    def render(self) -> Group:
        """The display: a teacher table and a dataset table."""
        teachers = Table(title="Teachers", title_justify="left")
        for header in ("teacher", "done", "failed", "in flight", "req/s", "tokens/s", "429s", "retries", "USD"):
            teachers.add_column(header, justify="left" if header == "teacher" else "right")
        for line in self.snapshot():
            teachers.add_row(
                line.teacher,
                f"{line.done:,}",
                f"{line.failed:,}",
                f"{line.in_flight}/{line.cap:.0f}",
                f"{line.req_per_s:.1f}",
                f"{line.tokens_per_s:,.0f}",
                f"{line.http_429:,}",
                f"{line.retries:,}",
                _usd(line.usd),
            )
        samples = Table(title="Samples", title_justify="left")
        for header in ("dataset", "decided", "received", "total"):
            samples.add_column(header, justify="left" if header == "dataset" else "right")
        for task, decided, received, total in self._samples():
            samples.add_row(task, f"{decided:,}", f"{received:,}", "?" if total is None else f"{total:,}")
        in_flight = self.batches() if self.batches is not None else ()
        if not in_flight:
            return Group(teachers, samples)
        batches = Table(title="Batches in flight", title_justify="left")
        for header in ("teacher", "batch", "state", "requests", "succeeded", "errored", "age"):
            batches.add_column(header, justify="left" if header in ("teacher", "batch", "state") else "right")
        for b in in_flight:
            batches.add_row(
                b.teacher,
                b.provider_id or b.local_id,
                b.state,
                f"{b.requests:,}",
                f"{b.succeeded:,}",
                f"{b.errored:,}",
                fmt_duration(b.age_s),
            )
        return Group(teachers, samples, batches)

    def summary_line(self) -> str:
        """One line for logs: per teacher done/in-flight, req/s, 429s, USD; per dataset decided/total."""
        parts = [
            f"{t.teacher} {t.done} done {t.in_flight} in flight {t.req_per_s:.1f} req/s {t.http_429} 429s {_usd(t.usd)}"
            for t in self.snapshot()
        ]
        parts += [
            f"{task} {decided}/{received if total is None else total} decided"
            for task, decided, received, total in self._samples()
        ]
        parts += [
            f"batch {b.teacher}/{b.provider_id or b.local_id} {b.state} {b.succeeded + b.errored}/{b.requests} "
            f"done, {fmt_duration(b.age_s)} old"
            for b in (self.batches() if self.batches is not None else ())
        ]
        return "; ".join(parts)

    async def run(
        self, console: Console | None = None, *, refresh_per_s: float = 4.0, log_every_s: float = 10.0
    ) -> None:
        """Show the display until cancelled: rich Live on a terminal, else a log line every `log_every_s`.

        When cancelled it draws (or logs) the final figures once more, then re-raises.
        """
        # rich's shared console: a run's stage board draws on it too, and this table nests under the board.
        console = console or get_console()
        if console.is_terminal:
            await self._draw(console, 1.0 / refresh_per_s)
        else:
            await self._log(log_every_s)

    async def _draw(self, console: Console, every_s: float) -> None:
        with Live(self.render(), console=console, auto_refresh=False) as live:
            try:
                while True:
                    await anyio.sleep(every_s)
                    live.update(self.render(), refresh=True)
            finally:
                live.update(self.render(), refresh=True)

    async def _log(self, every_s: float) -> None:
        try:
            while True:
                await anyio.sleep(every_s)
                log.info("progress: %s", self.summary_line())
        finally:
            log.info("progress (final): %s", self.summary_line())


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"
