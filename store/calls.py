"""The run's SQLite store: every teacher call, content-keyed, so a completed call is never bought twice.

One database per run directory (`store.sqlite`, WAL). Rows are appended, never
updated: each finished call (completed, failed, cached, skipped or cancelled) is one row in
`calls`; decided samples are rows in `samples`. A single writer task owns all
writes and commits whatever has queued up as one transaction (group commit), so a
SIGKILL loses at most the calls still in flight plus the few microseconds of rows
between an answer arriving and its commit.

Before a call is sent, `completed(key)` is looked up: the key hashes everything
that determines the answer (provider, model, sampling parameters, messages), so a
changed prompt or parameter misses the cache and a resumed run re-sends only what
never completed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from core.calls import ChatRequest
from store.events import Event, encode_event, event_kind

CallStatus = Literal["completed", "failed", "cached", "skipped", "cancelled"]
CallMode = Literal["sync", "batch"]
RowKind = Literal["call", "sample", "event", "batch"]
# A row for the writer: its kind, its values, and the event set once it is committed (None: nobody waits).
_Queued = tuple[RowKind, tuple, anyio.Event | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    dataset TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    teacher TEXT NOT NULL,
    stage TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    http_429 INTEGER NOT NULL,
    text TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    usd REAL,
    latency_s REAL NOT NULL,
    error TEXT,
    finished_at REAL NOT NULL,
    http_status INTEGER,
    possibly_usd REAL NOT NULL DEFAULT 0,
    possibly_attempts INTEGER NOT NULL DEFAULT 0,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    unusable TEXT,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_usd REAL NOT NULL DEFAULT 0,
    mode TEXT NOT NULL DEFAULT 'sync',
    batch TEXT
);
CREATE INDEX IF NOT EXISTS calls_key ON calls (key) WHERE status = 'completed';
CREATE INDEX IF NOT EXISTS calls_slot ON calls (dataset, sample_id);
CREATE TABLE IF NOT EXISTS samples (
    dataset TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    body BLOB NOT NULL,
    decided_at REAL NOT NULL,
    PRIMARY KEY (dataset, sample_id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    local_id TEXT NOT NULL,
    teacher TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class CallSlot(msgspec.Struct, frozen=True, kw_only=True):
    """Which call a row records: the request's content key, and the sample, teacher and stage it answers
    for (`target`: the teacher whose rationale a review scores, "" otherwise). A row's first columns."""

    key: str
    dataset: str
    sample_id: str
    teacher: str
    stage: str
    target: str = ""


class CallRow(CallSlot, frozen=True, kw_only=True):
    """One finished teacher call, as stored: its slot's columns, then what the call did.

    Tokens and `usd` are everything billed over all the call's attempts, whatever
    its status (answers without usable text included); `usd` is None when the price
    is unknown. `possibly_usd` is the worst case of `possibly_attempts` attempts sent
    and never answered (timeout, reset, cancelled), which the provider may have billed. `usage_estimated`: an answer
    came without usage and its tokens are our estimate. `unusable` says why the last
    billed answer had no usable text (filtered, refused, truncated, empty);
    `http_status` is the last response's raw status (None: no response).
    `reasoning_tokens` lie inside `output_tokens` (`reasoning_usd` is their share of
    `usd`), `cache_read_tokens` and `cache_write_tokens` inside `input_tokens`.
    """

    status: CallStatus
    attempts: int = 0
    retries: int = 0
    http_429: int = 0
    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = None
    latency_s: float = 0.0
    error: str | None = None
    finished_at: float = 0.0
    http_status: int | None = None
    possibly_usd: float = 0.0
    possibly_attempts: int = 0
    usage_estimated: bool = False
    unusable: str | None = None
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_usd: float = 0.0
    # "batch": answered through the provider's Batch API, in the batch `batch` (its local id).
    mode: CallMode = "sync"
    batch: str | None = None


# Columns added since the first release, with their definitions: a run directory
# made by an older version is migrated when opened, so it can still be resumed.
_ADDED_CALL_COLUMNS = {
    "http_status": "INTEGER",
    "possibly_usd": "REAL NOT NULL DEFAULT 0",
    "possibly_attempts": "INTEGER NOT NULL DEFAULT 0",
    "usage_estimated": "INTEGER NOT NULL DEFAULT 0",
    "unusable": "TEXT",
    "reasoning_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_read_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_write_tokens": "INTEGER NOT NULL DEFAULT 0",
    "reasoning_usd": "REAL NOT NULL DEFAULT 0",
    "mode": "TEXT NOT NULL DEFAULT 'sync'",
    "batch": "TEXT",
}

_COLUMNS = tuple(CallRow.__struct_fields__)
# Reads of call rows: this, a WHERE clause, and `call_row` on each row fetched.
SELECT_CALLS = f"SELECT {', '.join(_COLUMNS)} FROM calls"


def call_row(values: tuple) -> CallRow:
    """A row fetched with `SELECT_CALLS`, as its Struct."""
    return CallRow(**dict(zip(_COLUMNS, values, strict=True)))


_INSERT_CALL = f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


# ChatRequest fields added since the first release, with their defaults: left out of the
# key at those, so a request that uses none of them keeps the key older stores hold.
_KEY_OPTIONAL = {"token_field": "max_tokens", "reasoning": None, "structured_score": False}


def request_key(provider: str, request: ChatRequest) -> str:
    """Content hash of everything that determines a teacher's answer (never the API key)."""
    fields = msgspec.structs.asdict(request)
    for name, default in _KEY_OPTIONAL.items():
        if fields[name] == default:
            del fields[name]
    # A cache hint changes what is billed, not the answer.
    del fields["cache_prefix_chars"]
    payload = msgspec.json.encode((provider, fields))
    return hashlib.sha256(payload).hexdigest()


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) a run database in WAL mode with the schema applied."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode is durable against a killed process (the case we care
    # about); only an OS crash or power loss can drop the last transactions.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(_SCHEMA)
    _add_missing_columns(conn)
    return conn


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    for name, definition in _ADDED_CALL_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE calls ADD COLUMN {name} {definition}")


def sample_bodies(conn: sqlite3.Connection, dataset: str) -> list[bytes]:
    """The JSON bodies of a dataset's decided samples, in mistake order, from any connection to a run store."""
    cur = conn.execute("SELECT body FROM samples WHERE dataset = ? ORDER BY position", (dataset,))
    return [r[0] for r in cur]


class Store:
    """Reads and writes of one run's database; writes go through `writer()`.

    Use as::

        async with Store.open(out_dir / "store.sqlite") as store:
            row = store.completed(key)          # cache look-up, synchronous and fast
            await store.add_call(CallRow(...))  # queued, committed by the writer
    """

    def __init__(self, conn: sqlite3.Connection, send: MemoryObjectSendStream[_Queued]):
        self._conn = conn
        self._send = send
        # Completed answers queued but not yet committed: a look-up must see them too,
        # or an identical request made in that gap would be bought a second time.
        # Each entry keeps the queued values too: only their own commit may end the entry.
        self._uncommitted: dict[str, tuple[CallRow, tuple]] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, buffer: int = 1024) -> AsyncIterator[Store]:
        """Open the store and run its writer until the block exits (flushing everything queued)."""
        conn = open_db(path)
        send, recv = anyio.create_memory_object_stream[_Queued](max_buffer_size=buffer)
        try:
            async with anyio.create_task_group() as tg:
                store = cls(conn, send)
                tg.start_soon(store._write_all, recv)
                async with send:
                    yield store
        finally:
            conn.close()

    def completed(self, key: str) -> CallRow | None:
        """The most recent completed answer for this request content, if any."""
        pending = self._uncommitted.get(key)
        if pending is not None:
            return pending[0]
        cur = self._conn.execute(
            f"{SELECT_CALLS} WHERE key = ? AND status = 'completed' ORDER BY seq DESC LIMIT 1",
            (key,),
        )
        row = cur.fetchone()
        return None if row is None else call_row(row)

    def reused_in(self, slot: CallSlot) -> bool:
        """Whether a `cached` row already records this answer in this slot (a sample decided again)."""
        cur = self._conn.execute(
            "SELECT 1 FROM calls WHERE dataset = ? AND sample_id = ? AND stage = ? AND target = ? AND key = ? "
            "AND status = 'cached' LIMIT 1",
            (slot.dataset, slot.sample_id, slot.stage, slot.target, slot.key),
        )
        return cur.fetchone() is not None

    async def add_call(self, row: CallRow) -> None:
        """Queue a finished call for the writer."""
        if not row.finished_at:
            row = msgspec.structs.replace(row, finished_at=time.time())
        values = tuple(getattr(row, c) for c in _COLUMNS)
        earlier = None
        if row.status == "completed":
            earlier = self._uncommitted.get(row.key)
            self._uncommitted[row.key] = (row, values)
        try:
            await self._send.send(("call", values, None))
        except BaseException:
            # Not queued (cancelled, store closing): no commit will ever end the entry, and
            # a look-up would keep serving an answer that is in no row. An earlier entry
            # still queued for the same key comes back.
            if self._uncommitted.get(row.key, (None, None))[1] is values:
                if earlier is None:
                    del self._uncommitted[row.key]
                else:
                    self._uncommitted[row.key] = earlier
            raise

    async def add_sample(self, dataset: str, sample_id: str, position: int, body: bytes) -> None:
        """Queue a decided sample (its JSON body) for the writer; a re-decided sample replaces the old row."""
        await self._send.send(("sample", (dataset, sample_id, position, body, time.time()), None))

    async def add_event(self, event: Event) -> None:
        """Queue a run event (stage start/end, spending cap reached, ...) for the reports."""
        await self._send.send(("event", (time.time(), event_kind(event), encode_event(event)), None))

    async def add_durably(self, kind: RowKind, values: tuple) -> None:
        """Queue a row and return once it is committed: for what must be on disk before the next step
        (a batch recorded before the provider hears of it)."""
        committed = anyio.Event()
        await self._send.send((kind, values, committed))
        await committed.wait()

    def sample_bodies(self, dataset: str) -> list[bytes]:
        """Decided samples of a dataset in mistake order (reads what is committed)."""
        return sample_bodies(self._conn, dataset)

    async def _write_all(self, recv) -> None:
        """The single writer: commit everything queued so far as one transaction, repeatedly.

        Shielded from cancellation as a whole: it ends when the store's send side closes
        (the `Store.open` block exiting, also on Ctrl-C), after committing every row
        queued before that, so a cancelled run keeps every answer it already paid for.
        """
        with anyio.CancelScope(shield=True):
            async with recv:
                async for first in recv:
                    batch = [first]
                    while True:
                        try:
                            batch.append(recv.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    _commit(self._conn, batch)
                    for _, _, committed in batch:
                        if committed is not None:
                            committed.set()
                    for kind, values, _ in batch:
                        # Another row with this key (an earlier failure, a cached reuse) may
                        # commit first; the queued answer stays visible until its own row does.
                        if kind == "call" and self._uncommitted.get(values[0], (None, None))[1] is values:
                            del self._uncommitted[values[0]]

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for read-only report queries."""
        return self._conn


_SQL = {
    "call": _INSERT_CALL,
    "sample": "INSERT OR REPLACE INTO samples (dataset, sample_id, position, body, decided_at) VALUES (?, ?, ?, ?, ?)",
    "event": "INSERT INTO events (at, kind, body) VALUES (?, ?, ?)",
    "batch": "INSERT INTO batches (local_id, teacher, at, kind, body) VALUES (?, ?, ?, ?, ?)",
}


def _commit(conn: sqlite3.Connection, batch: list[_Queued]) -> None:
    conn.execute("BEGIN")
    try:
        for kind, values, _ in batch:
            conn.execute(_SQL[kind], values)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
