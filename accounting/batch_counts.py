"""What the batch teachers sent through the providers' Batch APIs, counted from the store's batch events.

Read-only, like the ledger: the cost report, the run report and `--stage status` use it,
also while a run is writing. A request is `resubmitted` when an earlier batch of the same
teacher already carried its call slot (a failed request sent again, or an expired batch's
leftovers); `expired`, `failed` and `cancelled` count batches that ended that way.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import msgspec

from core.tables import Table, fmt_duration, fmt_num
from store.batches import BatchRecord, batch_records


class BatchCounts(msgspec.Struct, kw_only=True):
    """One teacher's batches (in one dataset, or the whole run).

    `requests`: requests in its batches (of that dataset); `succeeded` / `errored`: as the
    provider last reported them; `open`: batches not closed yet (in flight, or left by a killed run).
    """

    teacher: str
    batches: int = 0
    requests: int = 0
    resubmitted: int = 0
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    failed: int = 0
    cancelled: int = 0
    open: int = 0


class BatchView(msgspec.Struct, kw_only=True):
    """One batch as the status and progress displays show it: state, counts and age (seconds since planned)."""

    local_id: str
    teacher: str
    provider_id: str | None
    state: str
    requests: int
    succeeded: int
    errored: int
    age_s: float
    closed: bool
    error: str | None = None


def batch_counts(conn: sqlite3.Connection, dataset: str | None = None) -> list[BatchCounts]:
    """Per teacher (sorted), its batches and their requests; with `dataset`, only batches carrying its requests.

    A batch serving several datasets counts once in each, with its requests of that dataset;
    its provider-reported `succeeded` / `errored` counts are the whole batch's.
    """
    counts: dict[str, BatchCounts] = {}
    seen: dict[str, set[tuple[str, str, str, str]]] = {}
    for record in _records(conn):
        slots = [s for s in record.slots if dataset is None or s.dataset == dataset]
        if not slots:
            continue
        c = counts.setdefault(record.teacher, BatchCounts(teacher=record.teacher))
        before = seen.setdefault(record.teacher, set())
        c.batches += 1
        c.requests += len(slots)
        for s in slots:
            slot = (s.dataset, s.sample_id, s.stage, s.target)
            c.resubmitted += slot in before
            before.add(slot)
        c.succeeded += record.succeeded
        c.errored += record.errored
        c.expired += record.state == "expired"
        c.failed += record.state == "failed"
        c.cancelled += record.state == "cancelled"
        c.open += not record.closed
    return [counts[t] for t in sorted(counts)]


def batch_views(conn: sqlite3.Connection, *, now: float | None = None, open_only: bool = False) -> list[BatchView]:
    """Every batch of the run (only those not closed, with `open_only`), oldest first, aged at `now`."""
    at = time.time() if now is None else now
    return [_view(r, at) for r in _records(conn, open_only=open_only)]


def batches_table(title: str, batches: Sequence[BatchView], note: str = "") -> Table:
    """Batches as a table: teacher, local and provider ids, state, requests, succeeded, errored, age."""
    return Table(
        title=title,
        headers=["teacher", "batch", "provider id", "state", "requests", "succeeded", "errored", "age"],
        rows=[
            [
                b.teacher,
                b.local_id,
                b.provider_id or "(not yet created)",
                b.state + ("" if b.closed else ", open") + (f": {b.error}" if b.error else ""),
                fmt_num(b.requests),
                fmt_num(b.succeeded),
                fmt_num(b.errored),
                fmt_duration(b.age_s),
            ]
            for b in batches
        ],
        text_columns=4,
        note=note,
    )


def _records(conn: sqlite3.Connection, *, open_only: bool = False) -> list[BatchRecord]:
    # A read-only connection to a store made before batch mode has no batches table (and no batches).
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'batches'").fetchone() is None:
        return []
    return batch_records(conn, open_only=open_only)


def _view(record: BatchRecord, now: float) -> BatchView:
    return BatchView(
        local_id=record.local_id,
        teacher=record.teacher,
        provider_id=record.batch_id,
        state=record.state,
        requests=len(record.slots),
        succeeded=record.succeeded,
        errored=record.errored,
        # A closed batch's age stops at its last event.
        age_s=max(0.0, (record.updated_at if record.closed else now) - record.planned_at),
        closed=record.closed,
        error=record.error,
    )
