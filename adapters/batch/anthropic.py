"""Anthropic's Message Batches: `POST /v1/messages/batches` with `requests: [{custom_id, params}]`,
polled on `processing_status`, results as JSONL from the batch's `results_url`.

Guide: https://docs.anthropic.com/en/docs/build-with-claude/batch-processing
Reference: https://docs.anthropic.com/en/api/creating-message-batches,
https://docs.anthropic.com/en/api/retrieving-message-batches, https://docs.anthropic.com/en/api/listing-message-batches,
https://docs.anthropic.com/en/api/retrieving-message-batch-results, https://docs.anthropic.com/en/api/canceling-message-batches

`params` is the sync adapter's body; a succeeded result's `message` is read by its `decode`.

Finding a lost batch: Anthropic batches carry no metadata, so `find` cannot ask for the tag.
It lists the batches created since the batch was planned (newest first) and takes the one
that holds as many requests as ours: an ended one only when the custom_ids in its results
are exactly ours; one still in progress (whose requests cannot be seen yet) only when it is
the single candidate left. Several in-progress candidates of the same size (another run on
the same workspace, or several of ours lost at once) cannot be told apart until they end:
`find` then raises Retryable, to be asked again later. A wrong in-progress match shows once
it ends: `results` refuses the custom_ids we did not send.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import msgspec
from yarl import URL

from adapters import anthropic
from adapters.batch.http import (
    NULL,
    BatchHttp,
    Tally,
    answered,
    create_once,
    decode_line,
    error_status,
    jsonl_lines,
    not_run,
)
from adapters.batch.packing import check_items
from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchState, BatchStatus
from core.errors import CommitteeError, Retryable

# "100,000 Message requests or 256 MB in size, whichever is reached first"
# (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing#batch-limitations).
# Anthropic caps the requests queued across batches per tier, not the number of batches
# (https://docs.anthropic.com/en/api/rate-limits, "Message Batches API"): 16 is our own figure.
LIMITS = BatchLimits(max_requests=100_000, max_bytes=256_000_000 - 1024, max_in_flight=16)
# https://docs.anthropic.com/en/api/creating-message-batches: `custom_id` must match this.
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CLOCK_SKEW_S = 600.0

# An errored result's error type as the HTTP status the sync API answers it with
# (https://docs.anthropic.com/en/api/errors), classified like a sync answer.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class _Request(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _Create(msgspec.Struct):
    requests: list[_Request]


class _Counts(msgspec.Struct):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


class _Batch(msgspec.Struct):
    """A view of the Message Batch object: only the fields we read."""

    id: str
    processing_status: str
    request_counts: _Counts = msgspec.field(default_factory=_Counts)
    created_at: str = ""
    cancel_initiated_at: str | None = None
    results_url: str | None = None


class _BatchPage(msgspec.Struct):
    data: list[_Batch] = []
    has_more: bool = False
    last_id: str | None = None


class _Error(msgspec.Struct):
    type: str = ""
    message: str = ""
    # The documented shape nests the error object: {"type": "error", "error": {"type", "message"}}.
    error: _Error | None = None


class _Result(msgspec.Struct):
    type: str
    message: msgspec.Raw = NULL
    error: _Error | None = None


class _ResultLine(msgspec.Struct):
    custom_id: str
    result: _Result


_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(_Batch)
_page_decoder = msgspec.json.Decoder(_BatchPage)
_line_decoder = msgspec.json.Decoder(_ResultLine)


class AnthropicBatches:
    """Anthropic's Message Batches for one teacher (a `BatchApi`); `base_url` is the host, as for sync calls."""

    __slots__ = ("_base", "_http", "limits")

    def __init__(self, http: BatchHttp, *, base_url: str, limits: BatchLimits = LIMITS) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self.limits = limits

    def __repr__(self) -> str:
        return f"AnthropicBatches(teacher={self._http.teacher!r}, base_url={self._base!r})"

    def item_bytes(self, item: BatchItem) -> int:
        """Bytes of the request in the batch's `requests` array, its comma included."""
        return len(_request(item)) + 1

    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
        """Create a Message Batch of `items`; returns its id. `tag` only names it in errors (see `find`)."""
        check_items(items, self.limits, self.item_bytes)
        for item in items:
            if not CUSTOM_ID.match(item.custom_id):
                raise ValueError(f"custom_id {item.custom_id!r} is not 1-64 letters, digits, - or _")
        ordered = sorted(items, key=lambda i: i.custom_id)
        body = b'{"requests":[' + b",".join(_request(item) for item in ordered) + b"]}"
        custom_ids = frozenset(item.custom_id for item in items)
        since = time.time()

        async def create() -> str:
            batch = await self._http.call(
                "POST",
                f"{self._base}/v1/messages/batches",
                _batch_decoder,
                where=f"batch {tag!r}",
                body=body,
                resend=False,
            )
            return batch.id

        return await create_once(
            create, lambda: self.find(tag, custom_ids=custom_ids, since=since), attempts=self._http.max_attempts
        )

    async def find(
        self,
        tag: str,
        *,
        custom_ids: frozenset[str] = frozenset(),
        since: float | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None:
        """The id of the batch of exactly `custom_ids` created after `since`, None if there is none
        (see the module's docstring for the rule and its limits).

        Raises Permanent without `custom_ids` and `since` (nothing to match by), Retryable
        while several in-progress batches could be it.
        """
        where = f"finding batch {tag!r}"
        if not custom_ids or since is None:
            raise self._http.fail(where, "Anthropic batches carry no tag: the look-up needs `custom_ids` and `since`")
        waiting: list[str] = []
        params = {"limit": "100"}
        while True:
            page = await self._http.call(
                "GET", f"{self._base}/v1/messages/batches", _page_decoder, where=where, params=params
            )
            for batch in page.data:
                created = _unix_s(batch.created_at)
                if created is not None and created < since - CLOCK_SKEW_S:
                    return _single(waiting, self._http, where)
                if batch.id in exclude or batch.request_counts.total != len(custom_ids):
                    continue
                if batch.processing_status != "ended":
                    waiting.append(batch.id)
                elif await self._custom_ids(batch) == custom_ids:
                    return batch.id
            if not page.has_more or not page.data:
                return _single(waiting, self._http, where)
            params = {"limit": "100", "after_id": page.last_id or page.data[-1].id}

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's state and counts (`errored` includes canceled and expired requests)."""
        batch = await self._batch(batch_id)
        counts = batch.request_counts
        return BatchStatus(
            batch_id=batch_id,
            state=_state(batch),
            total=counts.total,
            succeeded=counts.succeeded,
            errored=counts.errored + counts.canceled + counts.expired,
        )

    async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
        """One outcome per request of the ended batch; canceled and expired requests are retryable.

        Raises `Permanent` naming the batch and the line for a line that is not a result or
        names a custom_id this batch did not send, once every readable line came out.
        """
        batch = await self._batch(batch_id)
        where = f"batch {batch_id}"
        tally = Tally(custom_ids, lambda reason: self._http.fail(where, reason))
        for number, raw in await self._lines(batch):
            named = f"line {number} of the results"
            line = tally.read(_line_decoder, raw, named)
            if line is not None and tally.first(line.custom_id, named):
                yield _outcome(line)
        for outcome in tally.missing(f"no result in batch {batch_id} ({batch.processing_status})"):
            yield outcome

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch; requests already finished keep their results."""
        url = f"{self._base}/v1/messages/batches/{batch_id}/cancel"
        await self._http.call("POST", url, _batch_decoder, where=f"batch {batch_id}", body=b"{}")

    async def _batch(self, batch_id: str) -> _Batch:
        url = f"{self._base}/v1/messages/batches/{batch_id}"
        return await self._http.call("GET", url, _batch_decoder, where=f"batch {batch_id}")

    async def _lines(self, batch: _Batch) -> list[tuple[int, bytes]]:
        where = f"batch {batch.id}"
        if not batch.results_url:
            return []
        url = URL(batch.results_url)
        if not url.is_absolute():
            url = URL(self._base).join(url)
        if url.origin() != URL(self._base).origin():
            # The key goes with the request: only ever to the host it is meant for.
            raise self._http.fail(where, f"results_url points to another host ({url.origin()}); not following it")
        return list(jsonl_lines(await self._http.download(str(url), where=where)))

    async def _custom_ids(self, batch: _Batch) -> frozenset[str]:
        def fail(reason: str) -> CommitteeError:
            return self._http.fail(f"batch {batch.id}", reason)

        return frozenset(decode_line(_line_decoder, raw, fail, n).custom_id for n, raw in await self._lines(batch))


def _request(item: BatchItem) -> bytes:
    return _encoder.encode(_Request(custom_id=item.custom_id, params=msgspec.Raw(anthropic.encode(item.request))))


def _state(batch: _Batch) -> BatchState:
    # https://docs.anthropic.com/en/api/retrieving-message-batches: in_progress, canceling, ended.
    if batch.processing_status != "ended":
        return "running"
    if batch.cancel_initiated_at:
        return "cancelled"
    return "expired" if batch.request_counts.expired else "completed"


def _single(waiting: list[str], http: BatchHttp, where: str) -> str | None:
    if len(waiting) > 1:
        raise http.fail(
            where,
            f"{len(waiting)} batches in progress could be it ({', '.join(waiting)}); ask again once they end",
            error=Retryable,
        )
    return waiting[0] if waiting else None


def _unix_s(text: str) -> float | None:
    # RFC 3339 with a "Z" that Python 3.10's fromisoformat does not take.
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _outcome(line: _ResultLine) -> BatchOutcome:
    result = line.result
    if result.type == "succeeded" and bytes(result.message) != bytes(NULL):
        return answered(line.custom_id, anthropic.decode, 200, bytes(result.message))
    if result.type in ("canceled", "expired"):
        return not_run(line.custom_id, f"request {result.type} before it ran")
    error = result.error or _Error()
    inner = error.error or error
    status = _ERROR_STATUS.get(inner.type, 500)
    return error_status(line.custom_id, status, f"{inner.type or 'error'}: {inner.message or 'no message'}")
