"""Batch events: committed before `record_batch_event` returns, folded into one record per batch."""

import sqlite3

import anyio

from store.batches import BatchClosed, BatchPlanned, BatchPolled, BatchSubmitted, batch_records, record_batch_event
from store.calls import CallRow, CallSlot, Store


def test_batch_events_are_on_disk_when_recorded_and_fold_into_records(tmp_path):
    path = tmp_path / "store.sqlite"
    slots = (CallSlot(key="k1", dataset="svamp", sample_id="1", teacher="a", stage="rationale"),)

    async def main() -> None:
        async with Store.open(path) as store:
            await record_batch_event(
                store, "a", BatchPlanned(local_id="b1", teacher="a", provider="openai", tag="t1", slots=slots)
            )
            # Another connection sees it at once: a SIGKILL right after the call keeps it.
            assert [r.local_id for r in batch_records(sqlite3.connect(path))] == ["b1"]
            await record_batch_event(store, "a", BatchSubmitted(local_id="b1", batch_id="batch_x"))
            await record_batch_event(store, "a", BatchPolled(local_id="b1", state="running", succeeded=0, errored=0))
            await record_batch_event(
                store, "b", BatchPlanned(local_id="b2", teacher="b", provider="gemini", tag="t2", slots=())
            )
            await store.add_call(
                CallRow(
                    **{f: getattr(slots[0], f) for f in CallSlot.__struct_fields__},
                    status="completed",
                    text="x",
                    mode="batch",
                    batch="b1",
                )
            )
            await record_batch_event(store, "a", BatchClosed(local_id="b1", state="completed"))

    anyio.run(main)
    records = batch_records(sqlite3.connect(path))
    assert [(r.local_id, r.batch_id, r.state, r.closed, r.slots) for r in records] == [
        ("b1", "batch_x", "completed", True, slots),
        ("b2", None, "planned", False, ()),
    ]
    assert [r.local_id for r in batch_records(sqlite3.connect(path), teacher="b")] == ["b2"]
    assert sqlite3.connect(path).execute("SELECT mode, batch FROM calls").fetchall() == [("batch", "b1")]


def test_open_only_reads_the_batches_not_closed(tmp_path):
    path = tmp_path / "store.sqlite"

    async def main() -> None:
        async with Store.open(path) as store:
            for local_id in ("b1", "b2", "b3"):
                planned = BatchPlanned(local_id=local_id, teacher="a", provider="openai", tag=local_id, slots=())
                await record_batch_event(store, "a", planned)
            await record_batch_event(store, "a", BatchClosed(local_id="b2", state="completed"))

    anyio.run(main)
    conn = sqlite3.connect(path)
    assert [r.local_id for r in batch_records(conn, open_only=True)] == ["b1", "b3"]
    assert [r.local_id for r in batch_records(conn, "a", open_only=True)] == ["b1", "b3"]
    assert [r.local_id for r in batch_records(conn, "b", open_only=True)] == []
