"""Teacher.ask end to end: the store row of every call, whatever happened to it."""

from __future__ import annotations

import sqlite3

import anyio
import msgspec
import pytest
from aiohttp import web

from adapters import ChatClient
from core.calls import Message
from core.config import TeacherSection
from engine.budget import Budget
from engine.lane import CallOutcome, Lane, LaneLimits
from engine.teacher import Teacher
from store.calls import Store

pytestmark = pytest.mark.anyio

SECTION = msgspec.convert({"name": "t", "provider": "openai", "model": "m", "max_tokens": 100}, TeacherSection)
QUESTION = (Message("user", "What is 6 times 7?"),)


def _cost_usd(input_tokens: int, output_tokens: int, detail: object = None) -> float:
    return (input_tokens + 2 * output_tokens) / 1e6


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT status, input_tokens, output_tokens, usd, usage_estimated FROM calls").fetchall()


async def test_a_skipped_call_keeps_its_billed_row_when_cancelled_there(tmp_path):
    # Attempt 1 is billed, attempt 2 refused by the cap, and a Ctrl-C lands right then.
    # Before, the unshielded write was cancelled: the billed money had no row at all.
    class BilledThenSkipped:
        def __init__(self, scope: anyio.CancelScope):
            self.scope = scope

        async def call(self, request, *, tab):
            tab.reserve()
            tab.billed(1000, 500)
            self.scope.cancel()
            return CallOutcome(status="skipped", attempts=1, retries=0, error="budget")

    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        with anyio.CancelScope() as scope:
            teacher = Teacher(
                SECTION,
                BilledThenSkipped(scope),
                store=store,
                budget=Budget(10.0),
                cost_usd=_cost_usd,
                estimate_tokens=len,
            )
            await teacher.ask(QUESTION, dataset="d", sample_id="1", stage="rationale")
    assert _rows(db) == [("skipped", 1000, 500, pytest.approx(0.002), 0)]


@pytest.mark.parametrize(
    "usage",
    [
        b'{"prompt_tokens": 20, "completion_tokens": -100000000}',
        b'{"prompt_tokens": 1000000000000000000000000000000, "completion_tokens": 5}',
        b'{"prompt_tokens": null, "completion_tokens": 5}',
    ],
)
async def test_garbled_usage_is_estimated_and_the_row_committed(tmp_path, usage: bytes):
    # Before: negative money (-199.99 USD past the cap), an OverflowError rolling back the
    # writer's batch, or (null) a billed answer retried and bought again.
    answers = []

    async def answer(request: web.Request) -> web.Response:
        answers.append(request)
        return web.Response(
            content_type="application/json",
            body=b'{"choices": [{"message": {"content": '
            b'"The answer is 42."}, "finish_reason": "stop"}], "usage": %s}' % usage,
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    db = tmp_path / "store.sqlite"
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        async with ChatClient("openai", api_key="k", base_url=url) as client, Store.open(db) as store:
            lane = Lane("t", client, LaneLimits(tpm=60_000))
            teacher = Teacher(SECTION, lane, store=store, budget=Budget(1.0), cost_usd=_cost_usd, estimate_tokens=len)
            got = await teacher.ask(QUESTION, dataset="d", sample_id="1", stage="rationale")
    finally:
        await runner.cleanup()
    assert got.text == "The answer is 42." and len(answers) == 1
    [(status, input_tokens, output_tokens, usd, estimated)] = _rows(db)
    assert (status, estimated) == ("completed", 1)
    assert 0 < input_tokens < 1000 and 0 < output_tokens < 1000 and 0 < usd < 0.01
