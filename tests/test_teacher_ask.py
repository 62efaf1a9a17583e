"""Teacher.ask with a fake client under a real lane and a store in tmp (no HTTP): the cache, the join, the cap."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import msgspec
import pytest

from core.calls import NO_DETAIL, ChatRequest, ChatResult, Message, UsageDetail
from core.config import TeacherSection
from engine.budget import Budget
from engine.lane import Lane, LaneLimits
from engine.teacher import Answer, Teacher
from store.calls import CallRow, Store, request_key

pytestmark = pytest.mark.anyio

SECTION = msgspec.convert({"name": "t", "provider": "openai", "model": "m", "max_tokens": 100}, TeacherSection)
QUESTION = (Message("user", "What is 6 times 7?"),)


class FakeClient:
    """Answers every request "The answer is 42."; counts them, and holds each until `hold` is set, if given."""

    def __init__(self, hold: anyio.Event | None = None):
        self.requests: list[ChatRequest] = []
        self.entered = anyio.Event()
        self.hold = hold

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        self.requests.append(request)
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        return ChatResult(
            text="The answer is 42.", input_tokens=20, output_tokens=5, finish_reason="stop", latency_s=0.01
        )


def _cost_usd(input_tokens: int, output_tokens: int, detail: UsageDetail = NO_DETAIL) -> float:
    return (input_tokens + 2 * output_tokens) / 1e6


def _teacher(client: FakeClient, store: Store, budget: Budget | None = None) -> Teacher:
    lane = Lane("t", client, LaneLimits(backoff_base_s=0.001, backoff_cap_s=0.002))
    return Teacher(SECTION, lane, store=store, budget=budget or Budget(None), cost_usd=_cost_usd, estimate_tokens=len)


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT sample_id, status, error, usd FROM calls ORDER BY rowid").fetchall()


async def test_a_stored_answer_is_returned_without_calling_the_lane(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    client = FakeClient()
    async with Store.open(db) as store:
        first = await _teacher(client, store).ask(QUESTION, dataset="d", sample_id="1", stage="rationale")
        # Another sample asking the same thing, before the writer has committed the answer.
        again = await _teacher(client, store).ask(QUESTION, dataset="d", sample_id="2", stage="rationale")
    # A later run on the same store: the committed answer, still nothing sent; a slot that already
    # has its `cached` row (a sample decided again) adds none.
    async with Store.open(db) as store:
        later = await _teacher(client, store).ask(QUESTION, dataset="d", sample_id="1", stage="rationale")
        await _teacher(client, store).ask(QUESTION, dataset="d", sample_id="2", stage="rationale")
    assert first == again == later == Answer("The answer is 42.")
    assert len(client.requests) == 1
    assert _rows(db) == [("1", "completed", None, pytest.approx(30e-6)), ("2", "cached", None, 0.0)]


async def test_a_reused_batch_answer_is_recorded_as_batch_work(tmp_path: Path) -> None:
    # The cost report groups rows by mode: a batch answer reused for another slot belongs to the batch rows.
    db = tmp_path / "store.sqlite"
    client = FakeClient()
    async with Store.open(db) as store:
        teacher = _teacher(client, store)
        key = request_key("openai", teacher.request(QUESTION))
        slot = {"key": key, "dataset": "d", "teacher": "t", "stage": "rationale"}
        await store.add_call(CallRow(**slot, sample_id="1", status="completed", text="42", mode="batch", batch="b1"))
        assert await teacher.ask(QUESTION, dataset="d", sample_id="2", stage="rationale") == Answer("42")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT sample_id, status, mode, batch FROM calls ORDER BY rowid").fetchall()
    assert rows == [("1", "completed", "batch", "b1"), ("2", "cached", "batch", "b1")]
    assert client.requests == []


async def test_two_identical_asks_in_flight_join_one_call(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    hold = anyio.Event()
    client = FakeClient(hold)
    answers: dict[str, Answer] = {}
    async with Store.open(db) as store:
        teacher = _teacher(client, store)

        async def ask(sample_id: str) -> None:
            answers[sample_id] = await teacher.ask(QUESTION, dataset="d", sample_id=sample_id, stage="feedback")

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "1")
            await client.entered.wait()
            tg.start_soon(ask, "2")
            # Both asks are now parked: the first in the client, the second on the first's answer.
            await anyio.wait_all_tasks_blocked()
            assert len(client.requests) == 1
            hold.set()
    assert answers == {"1": Answer("The answer is 42."), "2": Answer("The answer is 42.")}
    assert len(client.requests) == 1
    assert [(sample, status) for sample, status, _, _ in _rows(db)] == [("1", "completed"), ("2", "cached")]


async def test_the_cap_refusing_skips_the_call_and_records_it(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    client = FakeClient()
    # The worst case of one attempt (prompt + 100 output tokens at these prices) is over 200e-6 USD.
    budget = Budget(100e-6)
    async with Store.open(db) as store:
        answer = await _teacher(client, store, budget).ask(QUESTION, dataset="d", sample_id="1", stage="review")
    assert answer == Answer(None, error="spending cap reached", skipped=True)
    assert client.requests == [] and budget.reached
    assert (budget.spent_usd, budget.possibly_usd, budget.reserved_usd) == (0.0, 0.0, 0.0)
    assert _rows(db) == [("1", "skipped", "budget", 0.0)]
