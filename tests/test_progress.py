"""The live progress display: rates from counters on a hand-stepped clock, the log-line fallback."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import anyio
import anyio.lowlevel
import pytest
from rich.console import Console

from accounting.live import ProgressView
from accounting.pricing import Prices


def _lane(**kw) -> SimpleNamespace:
    base = dict(
        started=0, completed=0, failed=0, in_flight=0, cap=8.0, http_429=0, retries=0, input_tokens=0, output_tokens=0
    )
    return SimpleNamespace(**{**base, **kw})


def _view(now: list[float]) -> tuple[ProgressView, SimpleNamespace, SimpleNamespace]:
    a, b = _lane(), _lane()
    counts = SimpleNamespace(received=10, decided=4)
    view = ProgressView(
        {"a": a, "b": b},
        prices={"a": Prices(in_per_mtok=1.0, out_per_mtok=2.0, source="t"), "b": None},
        datasets={"svamp": counts},
        totals={"svamp": 50},
        window_s=5.0,
        clock=lambda: now[0],
    )
    return view, a, b


def test_rates_are_measured_over_the_window():
    now = [100.0]
    view, a, _ = _view(now)
    assert view.snapshot()[0].req_per_s == 0.0
    now[0] = 102.0
    a.completed, a.failed, a.input_tokens, a.output_tokens = 9, 1, 3000, 1000
    line = view.snapshot()[0]
    assert line.req_per_s == pytest.approx(10 / 2.0) and line.tokens_per_s == pytest.approx(4000 / 2.0)
    assert line.usd == pytest.approx((3000 * 1.0 + 1000 * 2.0) / 1e6)
    now[0] = 110.0  # the first sample falls out: rates span the newest sample at least 5 s old
    a.completed = 19
    assert view.snapshot()[0].req_per_s == pytest.approx(10 / 8.0)
    now[0] = 111.0
    assert view.snapshot()[0].req_per_s == pytest.approx(10 / 9.0)
    now[0] = 117.0  # nothing finished in the last 6 s
    assert view.snapshot()[0].req_per_s == pytest.approx(0.0)


def test_render_and_summary_show_unknown_prices_and_samples():
    now = [0.0]
    view, _, b = _view(now)
    b.completed, b.http_429, b.in_flight = 3, 2, 5
    console = Console(record=True, width=160, force_terminal=False)
    console.print(view.render())
    text = console.export_text()
    assert "unknown" in text and "5/8" in text and "svamp" in text and "50" in text
    line = view.summary_line()
    assert "b 3 done 5 in flight" in line and "2 429s unknown" in line and "svamp 4/50 decided" in line


@pytest.mark.anyio
async def test_without_a_terminal_it_logs_a_final_line_when_cancelled(caplog):
    view, a, _ = _view([0.0])
    a.completed = 7
    console = Console(file=io.StringIO(), force_terminal=False)
    with caplog.at_level(logging.INFO, logger="accounting.live"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(view.run, console)
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert any("progress (final): a 7 done" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_on_a_terminal_it_draws_until_cancelled():
    view, a, _ = _view([0.0])
    a.completed = 3
    console = Console(record=True, force_terminal=True, width=160)
    async with anyio.create_task_group() as tg:
        tg.start_soon(view.run, console)
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert "Teachers" in console.export_text()


def test_batches_in_flight_show_with_state_counts_and_age():
    from accounting.batch_counts import BatchView

    in_flight = [
        BatchView(
            local_id="b1",
            teacher="a",
            provider_id="batch_abc",
            state="running",
            requests=40,
            succeeded=25,
            errored=1,
            age_s=754.0,
            closed=False,
        )
    ]
    view = ProgressView({"a": _lane()}, batches=lambda: in_flight)
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "Batches in flight" in text and "batch_abc" in text and "running" in text and "12m34s" in text
    assert "batch a/batch_abc running 26/40 done, 12m34s old" in view.summary_line()
    in_flight.clear()
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(view.render())
    assert "Batches" not in console.export_text() and "batch " not in view.summary_line()
