"""The life of each provider batch, as append-only events in the store's `batches` table.

A batch is planned (its requests' slots recorded, nothing sent), submitted (the provider's
batch id known), polled (its state and counts), downloaded (every result committed as a
call row) and closed. `BatchPlanned` is committed before the provider hears of the batch
and `BatchSubmitted` the moment its id is known, so a run killed anywhere in between
finds its batches again (`batch_records`) and polls them instead of paying twice.
"""

from __future__ import annotations

import sqlite3
import time

import msgspec

from core.batch import BatchState
from store.calls import SELECT_CALLS, CallRow, CallSlot, Store, call_row


class _BatchEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    local_id: str


class BatchPlanned(_BatchEvent, frozen=True, tag="planned"):
    """A batch about to be created: which teacher sends it and the slot of each request (`key` = custom_id).

    `tag` is what the provider is told to remember the batch by (metadata, display name),
    so a batch created by a run killed before `BatchSubmitted` was written can be found.
    """

    teacher: str
    provider: str
    tag: str
    slots: tuple[CallSlot, ...]
    # Each slot's worst case at batch prices: a run resuming the batch holds it against the spending cap.
    worst_usd: tuple[float, ...] = ()


class BatchSubmitted(_BatchEvent, frozen=True, tag="submitted"):
    """The provider accepted the batch and gave it `batch_id`."""

    batch_id: str


class BatchPolled(_BatchEvent, frozen=True, tag="polled"):
    """What the provider said of the batch when last asked."""

    state: BatchState
    succeeded: int = 0
    errored: int = 0
    error: str | None = None


class BatchClosed(_BatchEvent, frozen=True, tag="closed"):
    """Every result of the batch is committed (or the batch ended without results): nothing left to poll."""

    state: BatchState
    error: str | None = None


BatchEvent = BatchPlanned | BatchSubmitted | BatchPolled | BatchClosed

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BatchEvent)


class BatchRecord(msgspec.Struct, kw_only=True):
    """Where one batch stands, folded from its events. `closed`: nothing left to do for it."""

    local_id: str
    teacher: str
    provider: str
    tag: str
    slots: tuple[CallSlot, ...]
    worst_usd: tuple[float, ...] = ()
    batch_id: str | None = None
    state: BatchState = "planned"
    succeeded: int = 0
    errored: int = 0
    error: str | None = None
    planned_at: float = 0.0
    updated_at: float = 0.0
    closed: bool = False


async def record_batch_event(store: Store, teacher: str, event: BatchEvent) -> None:
    """Append `event` to the batch's history and return once it is committed."""
    kind = event.__struct_config__.tag
    assert isinstance(kind, str)
    await store.add_durably("batch", (event.local_id, teacher, time.time(), kind, _encoder.encode(event)))


def batch_records(
    conn: sqlite3.Connection, teacher: str | None = None, *, open_only: bool = False
) -> list[BatchRecord]:
    """Every batch of the run (of one teacher; with `open_only`, those not closed), oldest first, from any
    connection to a run store."""
    records: dict[str, BatchRecord] = {}
    where, params = [], []
    if teacher:
        where.append("teacher = ?")
        params.append(teacher)
    if open_only:
        # In SQL: a closed batch's plan (every slot of it) is never read or decoded, which the live view,
        # reading this at each redraw, would otherwise do for every batch the run ever closed.
        where.append("local_id NOT IN (SELECT local_id FROM batches WHERE kind = 'closed')")
    query = "SELECT at, body FROM batches" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
    for at, body in conn.execute(query, params):
        event = _decoder.decode(body)
        if isinstance(event, BatchPlanned):
            records[event.local_id] = BatchRecord(
                local_id=event.local_id,
                teacher=event.teacher,
                provider=event.provider,
                tag=event.tag,
                slots=event.slots,
                worst_usd=event.worst_usd,
                planned_at=at,
                updated_at=at,
            )
            continue
        record = records.get(event.local_id)
        if record is None:
            continue
        record.updated_at = at
        if isinstance(event, BatchSubmitted):
            record.batch_id = event.batch_id
            record.state = "submitted"
        elif isinstance(event, BatchPolled):
            record.state, record.succeeded, record.errored = event.state, event.succeeded, event.errored
            record.error = event.error
        else:
            record.state, record.error, record.closed = event.state, event.error or record.error, True
    return list(records.values())


def batch_call_rows(conn: sqlite3.Connection, local_id: str) -> dict[str, CallRow]:
    """The committed call rows of one batch's results, by content key (the latest where a key has several)."""
    query = f"{SELECT_CALLS} WHERE batch = ? ORDER BY seq"
    return {row.key: row for row in map(call_row, conn.execute(query, (local_id,)))}
