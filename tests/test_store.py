"""The run store: content keys, group commit, flushing on cancellation, reopening."""

from __future__ import annotations

import anyio
import pytest

from core.calls import ChatRequest, Message
from store.calls import CallRow, Store, open_db, request_key

pytestmark = pytest.mark.anyio


def _req(text: str = "hi", temperature: float = 0.8) -> ChatRequest:
    return ChatRequest(model="m", messages=(Message("user", text),), temperature=temperature)


def test_request_key_changes_with_content_and_params():
    base = request_key("openai", _req())
    assert base == request_key("openai", _req())
    assert base != request_key("openai", _req("hi!"))
    assert base != request_key("openai", _req(temperature=0.7))
    assert base != request_key("gemini", _req())


def _row(key: str, status: str = "completed", text: str = "answer") -> CallRow:
    return CallRow(
        key=key,
        dataset="svamp",
        sample_id="1",
        teacher="a",
        stage="rationale",
        status=status,
        text=text,
        input_tokens=3,
        output_tokens=5,
        usd=0.01,
    )


async def test_completed_lookup_survives_reopen(tmp_path):
    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        await store.add_call(_row("k1"))
        await store.add_call(_row("k2", status="failed", text=None))
    async with Store.open(db) as store:
        hit = store.completed("k1")
        assert hit is not None and hit.text == "answer" and hit.output_tokens == 5
        assert store.completed("k2") is None  # a failed call is sent again on resume
        assert store.completed("nope") is None


async def test_a_queued_answer_stays_visible_until_its_own_row_commits(tmp_path):
    async with Store.open(tmp_path / "store.sqlite") as store:
        await store.add_call(_row("k", status="failed", text=None))
        # The writer commits the failed row while this answer is on its way to the queue...
        await store.add_call(_row("k"))
        # ...and the answer, not committed yet, must still be found: else it is bought again.
        assert store.connection.execute("SELECT count(*) FROM calls WHERE status = 'completed'").fetchone()[0] == 0
        hit = store.completed("k")
        assert hit is not None and hit.text == "answer"


async def test_rows_queued_before_cancellation_are_committed(tmp_path):
    db = tmp_path / "store.sqlite"
    with anyio.CancelScope() as scope:
        async with Store.open(db, buffer=10_000) as store:
            for i in range(500):
                await store.add_call(_row(f"k{i}"))
            scope.cancel()
            await anyio.sleep(1)  # cancelled here, with rows still queued
    conn = open_db(db)
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 500


async def test_samples_replace_and_keep_order(tmp_path):
    async with Store.open(tmp_path / "s.sqlite") as store:
        await store.add_sample("svamp", "b", 1, b'{"v":1}')
        await store.add_sample("svamp", "a", 0, b'{"v":0}')
        await store.add_sample("svamp", "b", 1, b'{"v":2}')
    async with Store.open(tmp_path / "s.sqlite") as store:
        assert store.sample_bodies("svamp") == [b'{"v":0}', b'{"v":2}']


# The calls table as the first release created it, before billing columns were added.
_OLD_CALLS = """
CREATE TABLE calls (
    seq INTEGER PRIMARY KEY, key TEXT NOT NULL, dataset TEXT NOT NULL, sample_id TEXT NOT NULL,
    teacher TEXT NOT NULL, stage TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, retries INTEGER NOT NULL, http_429 INTEGER NOT NULL, text TEXT,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, usd REAL, latency_s REAL NOT NULL,
    error TEXT, finished_at REAL NOT NULL
);
INSERT INTO calls VALUES (1, 'k', 'svamp', '1', 'a', 'rationale', '', 'completed', 1, 0, 0, 'old answer',
                          3, 5, 0.01, 0.1, NULL, 1.0);
"""


async def test_an_old_run_directory_is_migrated_and_resumes(tmp_path):
    import sqlite3

    db = tmp_path / "store.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(_OLD_CALLS)
    conn.close()
    async with Store.open(db) as store:
        hit = store.completed("k")
        assert hit is not None and hit.text == "old answer" and hit.possibly_usd == 0 and hit.http_status is None
        assert (hit.reasoning_tokens, hit.cache_read_tokens, hit.cache_write_tokens, hit.reasoning_usd) == (0, 0, 0, 0)
        await store.add_call(
            CallRow(
                key="k2",
                dataset="svamp",
                sample_id="2",
                teacher="a",
                stage="rationale",
                status="failed",
                input_tokens=7,
                output_tokens=9,
                usd=0.02,
                http_status=200,
                possibly_usd=0.5,
                possibly_attempts=1,
                unusable="truncated",
                reasoning_tokens=9,
                cache_read_tokens=4,
                reasoning_usd=0.01,
            )
        )
    conn = open_db(db)
    row = conn.execute(
        "SELECT http_status, possibly_usd, possibly_attempts, unusable, reasoning_tokens, cache_read_tokens, "
        "reasoning_usd FROM calls WHERE key = 'k2'"
    )
    assert row.fetchone() == (200, 0.5, 1, "truncated", 9, 4, 0.01)
    conn.close()


async def test_an_answer_whose_queueing_was_cancelled_is_not_served_from_memory(tmp_path):
    # Nobody receives on this stream, so the send blocks until cancelled. Before, the
    # entry registered ahead of it stayed: look-ups served an answer that is in no row.
    send, recv = anyio.create_memory_object_stream[tuple[str, tuple]](0)
    store = Store(open_db(tmp_path / "store.sqlite"), send)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.add_call(_row("k"))
    assert store.completed("k") is None
    send.close()
    recv.close()


async def test_each_event_kind_round_trips_through_the_store(tmp_path):
    from store.events import BudgetReached, DatasetStop, StageEnd, StageStart, TeacherModels, read_events

    budget = BudgetReached(max_usd=1.0, spent_usd=0.98, datasets={"svamp": DatasetStop(not_started=3, incomplete=1)})
    async with Store.open(tmp_path / "s.sqlite") as store:
        for event in (
            StageStart(stage="teach"),
            TeacherModels(models={"a": "gpt-4o"}),
            budget,
            StageEnd(stage="teach"),
        ):
            await store.add_event(event)
    conn = open_db(tmp_path / "s.sqlite")
    assert [e for _, e in read_events(conn, StageStart)] == [StageStart(stage="teach")]
    assert [e for _, e in read_events(conn, StageEnd)] == [StageEnd(stage="teach")]
    assert [e for _, e in read_events(conn, TeacherModels)] == [TeacherModels(models={"a": "gpt-4o"})]
    assert [e for _, e in read_events(conn, BudgetReached)] == [budget]


def test_event_bodies_of_an_older_store_still_decode(tmp_path):
    """Bodies written as plain JSON objects, before the event Structs: no `kind` field, teachers as a bare mapping."""
    from store.events import BudgetReached, DatasetStop, StageStart, TeacherModels, read_events

    conn = open_db(tmp_path / "s.sqlite")
    conn.executemany(
        "INSERT INTO events (at, kind, body) VALUES (?, ?, ?)",
        [
            (1.0, "stage_start", b'{"stage":"teach"}'),
            (2.0, "teachers", b'{"gpt":"gpt-4o","models":"claude-x"}'),
            (3.0, "budget_reached", b'{"max_usd":0.5,"spent_usd":0.5}'),
            (
                4.0,
                "budget_reached",
                b'{"max_usd":0.5,"spent_usd":0.5,"datasets":{"svamp":{"not_started":2,"incomplete":0}}}',
            ),
        ],
    )
    assert read_events(conn, StageStart) == [(1.0, StageStart(stage="teach"))]
    assert read_events(conn, TeacherModels) == [(2.0, TeacherModels(models={"gpt": "gpt-4o", "models": "claude-x"}))]
    (_, old), (_, named) = read_events(conn, BudgetReached)
    assert old.datasets is None and old.spent_usd == 0.5
    assert named.datasets == {"svamp": DatasetStop(not_started=2)}
