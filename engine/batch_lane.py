"""One batch teacher's lane: its requests gathered into provider batches, each paid for once, resumable.

`Teacher.ask` hands a batch teacher's request here after the store look-up and the
in-flight join. Requests wait in a queue; a batch goes out when it is full (the
provider's requests and bytes per batch, or `batch_max_requests`) or when its first
request has waited `batch_window_s`, with at most `limits.max_in_flight` batches out
at once. Each batch, in this order:
1. each request's worst case at batch prices is reserved against the spending cap
   (one the cap can never afford is skipped, as in the sync lane);
2. `BatchPlanned` (its tag and slots) is committed, then the provider creates the batch;
3. `BatchSubmitted` is committed the moment its id is known;
4. it is polled every `batch_poll_s` (`BatchPolled` when its state or counts change);
5. each result is committed as a call row (mode "batch") as it is read;
6. `BatchClosed`.
A request that failed inside its batch (a server error, expiry, cancellation, a
failed batch) goes into a later batch until `max_attempts`, then fails, or with
`fallback = "sync"` goes back to the teacher for its sync lane.

A run killed anywhere leaves its batches at the provider and in the store. The next
run's `run` first finds them (a planned batch with no id by its tag), polls them and
counts their requests as in flight: an ask for one waits for that batch and is never
submitted again; results nobody asks for are committed all the same (they are paid).
Batches are never cancelled from here, for the same reason.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup, TaskStatus

from adapters.batch import BatchApi
from core.batch import BATCH_DONE, BatchItem, BatchOutcome, BatchState, BatchStatus
from core.calls import ChatRequest, UsageDetail, plausible_tokens
from core.config import TeacherSection
from core.errors import AccountError, CommitteeError, Permanent, Retryable, UnusableKind
from engine.budget import Budget, CallTab, CostFn, billed_row
from engine.tokens import estimate_request_tokens, estimate_tokens
from store.batches import (
    BatchClosed,
    BatchEvent,
    BatchPlanned,
    BatchPolled,
    BatchRecord,
    BatchSubmitted,
    batch_call_rows,
    batch_records,
    record_batch_event,
)
from store.calls import CallRow, CallSlot, Store

log = logging.getLogger(__name__)

# Look-ups of a planned batch's id before the batch is taken as lost (see `BatchLane._find`).
_FIND_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class BatchReply:
    """How a request ended in batches: `row` as committed (completed, failed, or skipped by the cap);
    None: it kept failing in batches and goes through the teacher's sync lane (`fallback = "sync"`)."""

    row: CallRow | None


class _Entry:
    """One request of the lane, from its ask (or its resumed batch) to its reply.

    `request` is None for a request of a resumed batch nobody has asked for yet in this run.
    """

    __slots__ = (
        "attempts",
        "done",
        "held_usd",
        "queued_at",
        "reply",
        "request",
        "size",
        "slot",
        "tab",
        "unusable",
        "worst_usd",
    )

    def __init__(self, slot: CallSlot, request: ChatRequest | None, tab: CallTab, *, worst_usd: float, size: int):
        self.slot = slot
        self.request = request
        # Tokens and USD over all attempts; the cap's reservation is `held_usd` while a batch holds it.
        self.tab = tab
        self.worst_usd = worst_usd
        self.held_usd: float | None = None
        self.size = size
        self.attempts = 0
        # Why the last billed answer had no usable text, for the row of a request that ends failed.
        self.unusable: UnusableKind | None = None
        self.queued_at = 0.0
        self.done = anyio.Event()
        self.reply: BatchReply | None = None


class BatchLane:
    """Batches for one teacher: `ask` from any task; `run` (started once, in the teach stage's task group)."""

    def __init__(self, section: TeacherSection, api: BatchApi, *, store: Store, budget: Budget, cost_usd: CostFn):
        self.name = section.name
        self.section = section
        # USD at the teacher's batch rates, for worst cases and rows alike.
        self.cost_usd = cost_usd
        self._api = api
        self._store = store
        self._budget = budget
        limits = api.limits
        self._max_requests = min(limits.max_requests, section.batch_max_requests or limits.max_requests)
        self._max_bytes = limits.max_bytes
        self._max_in_flight = limits.max_in_flight
        # Requests waiting for, or inside, a batch of this run or of a resumed one, by content key.
        self._entries: dict[str, _Entry] = {}
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._wake = anyio.Event()
        # Provider ids of this teacher's recorded batches: a look-up by requests must not take one for another.
        self._known_ids: frozenset[str] = frozenset()
        # Set once the provider refused a batch for a reason no later batch escapes (no Batch API at
        # the host, an account that cannot use it): the one line every request still waiting fails with.
        self._refused: str | None = None
        self._closing = anyio.Event()

    async def ask(
        self,
        slot: CallSlot,
        request: ChatRequest,
        worst_usd: float,
        *,
        queued: Callable[[], Awaitable[None]] | None = None,
    ) -> BatchReply:
        """Get `request` answered through batches (or joined to the open batch that already holds it).

        `worst_usd`: one attempt's worst case at batch prices. `queued` is awaited once the
        request is in the lane, before waiting for its answer (the sample parks there: its
        request must not wait on the parking). Cancelled while queued, the request leaves
        the queue; once in a batch it stays there (a rerun collects it).
        """
        entry = self._entries.get(slot.key)
        if entry is None:
            size = self._size(slot.key, request)
            entry = self._entries[slot.key] = _Entry(
                slot, request, self._tab(worst_usd), worst_usd=worst_usd, size=size
            )
            self._enqueue(entry)
        elif entry.request is None:
            # A resumed batch holds it: should it fail there, this request is what a later batch sends.
            entry.request, entry.size, entry.worst_usd = request, self._size(slot.key, request), worst_usd
            entry.tab.worst_usd = worst_usd
        try:
            if queued is not None:
                await queued()
            await entry.done.wait()
        except BaseException:
            if entry in self._queue:
                self._queue.remove(entry)
                self._queued_bytes -= entry.size
                del self._entries[slot.key]
            raise
        assert entry.reply is not None
        return entry.reply

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Take up the batches an earlier run left open, then send batches until `close` (or cancelled).

        `started` is signalled once every open batch's requests count as in flight, so no
        ask made after it can submit one of them again. After `close`, returns once each batch
        still out was polled once more and, when done, collected; the others stay open.
        """
        try:
            async with anyio.create_task_group() as tg:
                records = batch_records(self._store.connection, self.name)
                self._known_ids = frozenset(r.batch_id for r in records if r.batch_id is not None)
                for record in records:
                    if not record.closed:
                        await self._resume(record, tg)
                task_status.started()
                await self._send_batches(tg)
        except anyio.get_cancelled_exc_class():
            if self._in_flight:
                log.info(
                    "teacher %r: %d batches left at the provider; a rerun collects them", self.name, self._in_flight
                )
            raise

    # -- the queue ---------------------------------------------------------------------------

    def _tab(self, worst_usd: float) -> CallTab:
        # No budget on the tab: the lane reserves and settles a whole request per batch itself,
        # and a resumed batch's results are booked without any reservation of this run.
        return CallTab(worst_usd=worst_usd, cost_usd=self.cost_usd)

    def _size(self, key: str, request: ChatRequest) -> int:
        return self._api.item_bytes(BatchItem(custom_id=key, request=request))

    def _enqueue(self, entry: _Entry) -> None:
        entry.queued_at = anyio.current_time()
        self._queue.append(entry)
        self._queued_bytes += entry.size
        self._poke()

    def _poke(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    def _full(self) -> bool:
        # Refused: the queue is failed (or sent to sync) at once, not after a window.
        return (
            len(self._queue) >= self._max_requests or self._queued_bytes >= self._max_bytes or self._refused is not None
        )

    def close(self) -> None:
        """Teaching is over (no ask is waiting): collect what is ready, leave what is not, and let `run` return."""
        self._closing.set()
        self._poke()

    async def _send_batches(self, tg: TaskGroup) -> None:
        while True:
            wake = self._wake
            if self._closing.is_set() and not self._queue:
                return
            if not self._queue or (self._in_flight >= self._max_in_flight and self._refused is None):
                await wake.wait()
                continue
            wait_s = self._queue[0].queued_at + self.section.batch_window_s - anyio.current_time()
            if wait_s > 0 and not self._full():
                with anyio.move_on_after(wait_s):
                    await wake.wait()
                continue
            entries = await self._take()
            if entries:
                self._in_flight += 1
                tg.start_soon(self._send_batch, entries)

    async def _take(self) -> list[_Entry]:
        """The next batch's requests, each with its worst case reserved against the cap (in queue order)."""
        taken: list[_Entry] = []
        size = 0
        while self._queue and len(taken) < self._max_requests:
            entry = self._queue[0]
            if self._refused is not None:
                self._dequeue()
                await self._give_up(entry, self._refused)
                continue
            answered = self._store.completed(entry.slot.key)
            if answered is not None:
                # Answered while it waited here (a batch an earlier run left open held it too): not bought again.
                self._dequeue()
                await self._finish(entry, answered, commit=False)
                continue
            if entry.size > self._max_bytes:
                self._dequeue()
                await self._fail(entry, f"request of {entry.size} bytes is over the batch limit of {self._max_bytes}")
                continue
            if size + entry.size > self._max_bytes:
                break
            verdict = self._budget.reserve(entry.worst_usd)
            if verdict == "wait":
                if taken:
                    break
                # Only reservations in flight are in the way: wait for one to settle.
                await self._budget.changed()
                continue
            self._dequeue()
            if verdict == "refused":
                await self._finish(entry, billed_row(entry.slot, entry.tab, status="skipped", error="budget"))
                continue
            entry.held_usd = entry.worst_usd
            entry.attempts += 1
            taken.append(entry)
            size += entry.size
        return taken

    def _dequeue(self) -> None:
        entry = self._queue.popleft()
        self._queued_bytes -= entry.size

    # -- one batch ---------------------------------------------------------------------------

    async def _send_batch(self, entries: list[_Entry]) -> None:
        local_id = uuid.uuid4().hex[:16]
        tag = f"committee-{local_id}"
        slots = tuple(e.slot for e in entries)
        # Before the plan is recorded: a look-up for this batch lists the provider's batches back to here.
        planned_at = time.time()
        try:
            await self._record(
                BatchPlanned(
                    local_id=local_id,
                    teacher=self.name,
                    provider=self.section.provider,
                    tag=tag,
                    slots=slots,
                    worst_usd=tuple(e.worst_usd for e in entries),
                )
            )
            items = [BatchItem(custom_id=e.slot.key, request=e.request) for e in entries if e.request is not None]
            try:
                batch_id = await self._api.submit(items, tag=tag)
            except Permanent as exc:
                # The provider answered no (the clients raise Permanent only then): nothing was created.
                cause = f"not created: {exc}"
                await self._record(BatchClosed(local_id=local_id, state="failed", error=cause))
                if exc.http_status == 404 or isinstance(exc, AccountError):
                    # No Batch API at this host (an OpenAI-compatible server), or an account that cannot
                    # use it: every later batch would be refused the same way.
                    self._refused = self._where(local_id, f"{cause}; set mode = 'sync' for this teacher")
                await self._not_created(entries, local_id, cause)
                return
            except Retryable as exc:
                # The answer to a create can be lost after the batch was made: look before sending again.
                try:
                    batch_id = await self._find(tag, slots, planned_at)
                except Permanent as lost:
                    # Maybe created, maybe not: left planned, so the next run looks again; sending its requests
                    # again (in this run too) could pay for them twice.
                    log.warning("%s", lost)
                    for entry in entries:
                        self._block(entry, str(lost))
                    return
                if batch_id is None:
                    cause = f"not created: {exc}"
                    await self._record(BatchClosed(local_id=local_id, state="failed", error=cause))
                    await self._not_created(entries, local_id, cause)
                    return
            await self._record(BatchSubmitted(local_id=local_id, batch_id=batch_id))
            await self._follow(local_id, batch_id, {e.slot.key: e for e in entries}, {s.key: s for s in slots})
        finally:
            self._in_flight -= 1
            self._poke()

    async def _follow(
        self,
        local_id: str,
        batch_id: str,
        entries: dict[str, _Entry],
        slots: dict[str, CallSlot],
        state: BatchState = "submitted",
    ) -> None:
        """Poll the batch until the provider is done with it, then commit its results and close it."""
        seen: tuple[BatchState, int, int] = (state, 0, 0)
        while True:
            try:
                status = await self._api.status(batch_id)
            except Retryable as exc:
                log.warning("teacher %r: batch %s: poll failed (%s); polling again", self.name, batch_id, exc)
                status = None
            except Permanent as exc:
                # Not shown to this key (another account's, a changed base_url) or refused: it may still run
                # and bill, so its requests are not sent again, and it stays open for a run that can poll it.
                cause = self._where(
                    batch_id, f"cannot be polled ({exc}); rerun with the API key and base_url that created it"
                )
                log.warning("%s", cause)
                for entry in entries.values():
                    self._block(entry, cause)
                return
            if status is not None:
                now = (status.state, status.succeeded, status.errored)
                if now != seen:
                    seen = now
                    await self._record(
                        BatchPolled(
                            local_id=local_id,
                            state=status.state,
                            succeeded=status.succeeded,
                            errored=status.errored,
                            error=status.error,
                        )
                    )
                if status.state in BATCH_DONE:
                    break
            if self._closing.is_set():
                # Polled once since teaching ended and not done: left open, for a later run to collect.
                return
            with anyio.move_on_after(self.section.batch_poll_s):
                await self._closing.wait()
        await self._collect(local_id, status, entries, slots)

    async def _collect(
        self, local_id: str, status: BatchStatus, entries: dict[str, _Entry], slots: dict[str, CallSlot]
    ) -> None:
        batch_id = status.batch_id
        pending = dict(entries)
        cause = status.error or status.state
        # Rows a run killed while downloading this batch already committed from its results: billed once, kept once.
        recorded = batch_call_rows(self._store.connection, local_id)
        seen: set[str] = set()
        while status.state != "failed":
            try:
                async for outcome in self._api.results(batch_id, frozenset(slots)):
                    if outcome.custom_id in seen:
                        continue  # a download started again after a lost connection
                    seen.add(outcome.custom_id)
                    entry = pending.pop(outcome.custom_id, None)
                    earlier = recorded.get(outcome.custom_id)
                    if earlier is not None:
                        if entry is not None:
                            await self._settle_recorded(entry, earlier, outcome, batch_id)
                        continue
                    if entry is None:
                        if outcome.result is None and outcome.unusable is None:
                            continue  # not billed
                        # Its key is held by another batch too, or already answered another way: this answer
                        # is paid all the same, so it gets a row of its own.
                        entry = _Entry(slots[outcome.custom_id], None, self._tab(0.0), worst_usd=0.0, size=0)
                        entry.attempts = 1
                    await self._settle(entry, outcome, local_id, batch_id)
                break
            except Retryable as exc:
                log.warning("teacher %r: batch %s: download failed (%s); trying again", self.name, batch_id, exc)
                await anyio.sleep(self.section.batch_poll_s)
            except Permanent as exc:
                # Paid for, perhaps, but unreadable: sending the rest again could pay twice.
                cause = f"results unreadable: {exc}"
                for entry in pending.values():
                    await self._unreadable(entry, self._where(batch_id, cause))
                pending.clear()
                break
        others_out = self._in_flight > 1
        if status.queue_full and others_out:
            # The provider's queue holds no more than the other batches out now: wait for one of them
            # before sending again, and do not count this try against the requests' attempts.
            self._max_in_flight = self._in_flight - 1
            cause += f"; sending its requests again with at most {self._max_in_flight} batches out"
        for entry in pending.values():
            # A request of a failed batch, or one the results left out, was not billed.
            if status.queue_full and others_out:
                entry.attempts -= 1
            await self._again_or_fail(
                entry, batch_id, cause if status.state != "completed" else "no result in the batch"
            )
        if status.state != "completed" or cause != status.state:
            log.warning("%s", self._where(batch_id, cause) + f" ({len(slots)} requests; see the batch's store events)")
        await self._record(
            BatchClosed(local_id=local_id, state=status.state, error=None if cause == status.state else cause)
        )

    async def _not_created(self, entries: list[_Entry], local_id: str, cause: str) -> None:
        """A batch the provider refused to create: each request goes into a later batch, fails or falls back."""
        log.warning("%s", self._refused or self._where(local_id, cause))
        for entry in entries:
            await self._again_or_fail(entry, local_id, cause)

    async def _settle(self, entry: _Entry, outcome: BatchOutcome, local_id: str, batch_id: str) -> None:
        """Commit what `outcome` billed as a row of this batch, then finish the request or send it again."""
        result = outcome.result
        if result is None:
            if outcome.unusable is None and outcome.retryable:
                await self._again_or_fail(entry, batch_id, outcome.error or "failed")
                return
            if outcome.unusable is None:
                await self._fail(
                    entry, self._where(batch_id, outcome.error or "failed"), http_status=outcome.http_status
                )
                return
            # Answered and billed without usable text, as the sync lane bills it; a truncated answer
            # that reported no usage used all of its output limit.
            entry.unusable = outcome.unusable
            limit = entry.request.output_limit if entry.request is not None else 0
            unreported = limit if outcome.unusable == "truncated" else 0
            self._bill(entry, outcome.input_tokens, outcome.output_tokens, outcome.detail, unreported)
            row = billed_row(
                entry.slot,
                entry.tab,
                status="failed",
                attempts=entry.attempts,
                error=self._where(batch_id, outcome.error or "failed"),
                http_status=outcome.http_status,
                unusable=outcome.unusable,
                mode="batch",
                batch=local_id,
            )
            # Committed now, not with the request's last attempt: a kill after this batch is closed must
            # not lose this money. Later attempts start a tab of their own.
            await self._commit(row)
            entry.tab = self._tab(entry.worst_usd)
            await self._settle_recorded(entry, row, outcome, batch_id)
            return
        reported = (result.input_tokens, result.output_tokens) if result.usage_reported else (None, None)
        self._bill(entry, *reported, result.detail, estimate_tokens(result.text))
        row = billed_row(
            entry.slot,
            entry.tab,
            status="completed",
            attempts=max(entry.attempts, 1),
            retries=max(entry.attempts - 1, 0),
            text=result.text,
            latency_s=result.latency_s,
            http_status=result.http_status,
            mode="batch",
            batch=local_id,
        )
        await self._finish(entry, row)

    async def _settle_recorded(self, entry: _Entry, row: CallRow, outcome: BatchOutcome, batch_id: str) -> None:
        """Finish a request whose outcome in this batch is already a committed `row`, or send it again."""
        self._settle_reservation(entry, 0.0)
        if row.status != "completed" and outcome.retryable:
            await self._again_or_fail(entry, batch_id, outcome.error or "failed", recorded=row)
            return
        await self._finish(entry, row, commit=False)

    def _bill(
        self,
        entry: _Entry,
        input_tokens: int | None,
        output_tokens: int | None,
        detail: UsageDetail,
        unreported_output: int,
    ) -> None:
        """Bill one answer to the request's tab and settle its reservation at what it cost."""
        before = entry.tab.usd
        if plausible_tokens(input_tokens) and plausible_tokens(output_tokens):
            assert input_tokens is not None and output_tokens is not None
            entry.tab.billed(input_tokens, output_tokens, detail=detail)
        else:
            # No usage reported is not free: bill our estimate, marked as one.
            prompt = estimate_request_tokens(entry.request) if entry.request is not None else 0
            entry.tab.billed(prompt, unreported_output, estimated=True)
        self._settle_reservation(entry, None if entry.tab.usd is None or before is None else entry.tab.usd - before)

    def _settle_reservation(self, entry: _Entry, spent_usd: float | None) -> None:
        if entry.held_usd is not None:
            self._budget.settle(entry.held_usd, spent_usd)
            entry.held_usd = None
        elif spent_usd:
            self._budget.book(spent_usd)

    async def _again_or_fail(
        self, entry: _Entry, batch_id: str, cause: str, *, recorded: CallRow | None = None
    ) -> None:
        """Into a later batch while attempts are left; else given up (`_give_up`). `recorded`: the
        row already committed for this attempt (a billed answer without usable text), ending it if it ends."""
        self._settle_reservation(entry, 0.0)
        if entry.request is None:
            # Of a resumed batch and asked by nobody in this run: a later ask sends it afresh.
            self._release(entry)
            entry.reply = BatchReply(recorded)
            entry.done.set()
            return
        if entry.attempts < self.section.max_attempts and self._refused is None:
            self._enqueue(entry)
            return
        error = self._refused or self._where(batch_id, f"{cause}, after {entry.attempts} batches")
        await self._give_up(entry, error, recorded=recorded)

    async def _give_up(self, entry: _Entry, error: str, *, recorded: CallRow | None = None) -> None:
        """No more batches for this request: through the sync lane (`fallback = "sync"`), or failed with `error`."""
        self._settle_reservation(entry, 0.0)
        if self.section.fallback == "sync":
            self._release(entry)
            entry.reply = BatchReply(None)
            entry.done.set()
            return
        if recorded is not None:
            await self._finish(entry, recorded, commit=False)
            return
        await self._fail(entry, error)

    async def _unreadable(self, entry: _Entry, error: str) -> None:
        """Sent, and perhaps answered and billed in a result nobody can read: possibly billed at its worst case."""
        if entry.held_usd is not None:
            self._budget.abandon(entry.held_usd)
            entry.held_usd = None
        entry.tab.abandoned()
        await self._fail(entry, error)

    async def _fail(self, entry: _Entry, error: str, *, http_status: int | None = None) -> None:
        self._settle_reservation(entry, 0.0)
        row = billed_row(
            entry.slot,
            entry.tab,
            status="failed",
            attempts=entry.attempts,
            error=error,
            http_status=http_status,
            unusable=entry.unusable,
            mode="batch",
        )
        await self._finish(entry, row)

    async def _finish(self, entry: _Entry, row: CallRow, *, commit: bool = True) -> None:
        if commit:
            await self._commit(row)
        # The row is visible to `Store.completed` from here on, so the key can leave the lane.
        self._release(entry)
        entry.reply = BatchReply(row)
        entry.done.set()

    async def _commit(self, row: CallRow) -> None:
        # Shielded: a Ctrl-C landing here must not lose a paid-for answer.
        with anyio.CancelScope(shield=True):
            await self._store.add_call(row)

    def _release(self, entry: _Entry) -> None:
        # Only its own entry: a stray answer (see `_collect`) must not take the key from the request holding it.
        if self._entries.get(entry.slot.key) is entry:
            del self._entries[entry.slot.key]

    def _where(self, batch_id: str, cause: str) -> str:
        # A client's error names the teacher already; once is enough in a one-line message.
        own = f"teacher {self.name!r}: "
        return f"{own}batch {batch_id}: {cause.replace(own, '', 1)}"

    # -- resume -----------------------------------------------------------------------------

    async def _resume(self, record: BatchRecord, tg: TaskGroup) -> None:
        batch_id = record.batch_id
        if batch_id is None:
            try:
                batch_id = await self._find(record.tag, record.slots, record.planned_at)
            except Permanent as exc:
                self._hold_unknown(record, str(exc))
                return
            if batch_id is None:
                # Killed between planning and creating it: nothing was sent; the asks of this run send it.
                await self._record(BatchClosed(local_id=record.local_id, state="planned", error="never created"))
                return
            await self._record(BatchSubmitted(local_id=record.local_id, batch_id=batch_id))
        entries: dict[str, _Entry] = {}
        worst = record.worst_usd if len(record.worst_usd) == len(record.slots) else (0.0,) * len(record.slots)
        for slot, worst_usd in zip(record.slots, worst, strict=True):
            if slot.key in self._entries or self._store.completed(slot.key) is not None:
                continue
            entry = _Entry(slot, None, self._tab(worst_usd), worst_usd=worst_usd, size=0)
            entry.attempts = 1
            # Already sent: its worst case counts against the cap until its result settles it.
            self._budget.hold(worst_usd)
            entry.held_usd = worst_usd
            entries[slot.key] = self._entries[slot.key] = entry
        log.info(
            "teacher %r: following batch %s left open by an earlier run (%d requests)",
            self.name,
            batch_id,
            len(entries),
        )
        self._in_flight += 1
        tg.start_soon(self._follow_resumed, record, batch_id, entries)

    def _hold_unknown(self, record: BatchRecord, cause: str) -> None:
        """A planned batch nobody can say was created or not: its requests fail in this run instead of being
        sent again (which could pay twice); the batch stays planned, so the next run looks for it again."""
        log.warning("%s", cause)
        for slot in record.slots:
            if slot.key in self._entries or self._store.completed(slot.key) is not None:
                continue
            entry = self._entries[slot.key] = _Entry(slot, None, self._tab(0.0), worst_usd=0.0, size=0)
            self._block(entry, cause)

    def _block(self, entry: _Entry, cause: str) -> None:
        """Fail the request in this run and keep its key in the lane, so no ask sends it again: it may be paid."""
        if entry.held_usd is not None:
            # Perhaps billed, never settled: booked as possibly billed, not held (a hold that never
            # settles would keep every later reservation waiting).
            self._budget.abandon(entry.held_usd)
            entry.held_usd = None
        entry.reply = BatchReply(billed_row(entry.slot, entry.tab, status="failed", error=cause, mode="batch"))
        entry.done.set()

    async def _follow_resumed(self, record: BatchRecord, batch_id: str, entries: dict[str, _Entry]) -> None:
        try:
            slots = {slot.key: slot for slot in record.slots}
            await self._follow(record.local_id, batch_id, entries, slots, record.state)
        finally:
            self._in_flight -= 1
            self._poke()

    async def _find(self, tag: str, slots: Sequence[CallSlot], planned_at: float) -> str | None:
        """The provider's id of the batch planned under `tag`, None if it was never created.

        Anthropic's batches carry no tag: its client matches the requests' custom_ids among the
        batches created since the plan, other than those this teacher already recorded.
        """
        custom_ids = frozenset(slot.key for slot in slots)
        cause: CommitteeError | None = None
        for attempt in range(1, _FIND_ATTEMPTS + 1):
            try:
                return await self._api.find(tag, custom_ids=custom_ids, since=planned_at, exclude=self._known_ids)
            except Retryable as exc:
                # Say, several batches that could be it are still running: look again shortly.
                cause = exc
                if attempt < _FIND_ATTEMPTS:
                    await anyio.sleep(self.section.batch_poll_s)
            except CommitteeError as exc:
                cause = exc
                break
        raise Permanent(
            f"teacher {self.name!r}: cannot look up batch {tag!r} at the provider ({cause}); "
            "rerun when the provider answers (nothing was sent again)"
        )

    async def _record(self, event: BatchEvent) -> None:
        if isinstance(event, BatchSubmitted):
            self._known_ids |= {event.batch_id}
        # Shielded: the batch's history must reach the store even when the run is stopping.
        with anyio.CancelScope(shield=True):
            await record_batch_event(self._store, self.name, event)
