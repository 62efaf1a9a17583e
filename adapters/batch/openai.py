"""OpenAI's Batch API: the requests as a JSONL file, a batch over it, then its output and error files.

Guide: https://platform.openai.com/docs/guides/batch
Reference: https://platform.openai.com/docs/api-reference/batch (create, retrieve, list, cancel;
the request input and output line objects) and https://platform.openai.com/docs/api-reference/files
(`purpose=batch` uploads, `GET /files/{id}/content`).

Each input line is `{custom_id, method: "POST", url: "/v1/chat/completions", body}` with the
sync adapter's body; each output line `{id, custom_id, response: {status_code, request_id,
body}, error}`, the body read by the sync adapter's `decode`. The batch carries our tag in
`metadata`, which `GET /batches` lists back, so a batch created by a run that died before
recording its id is found again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import aiohttp
import msgspec

from adapters import openai
from adapters.batch.http import (
    NULL,
    BatchHttp,
    Tally,
    answered,
    create_once,
    error_status,
    jsonl_lines,
    not_run,
)
from adapters.batch.packing import check_items
from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchState, BatchStatus

ENDPOINT = "/v1/chat/completions"
# The metadata key our tag travels under (keys up to 64 characters, values up to 512).
TAG_KEY = "committee_tag"
# "The file can contain up to 50,000 requests, and can be up to 200 MB in size"
# (https://platform.openai.com/docs/api-reference/batch/create). OpenAI caps enqueued prompt
# tokens per model, not the number of batches (https://platform.openai.com/docs/guides/rate-limits,
# "Batch API"): 16 at once is our own conservative figure.
LIMITS = BatchLimits(max_requests=50_000, max_bytes=200_000_000, max_in_flight=16)
# Batches are listed newest first; one created this long before it was planned is not ours
# (clock skew between us and the provider).
CLOCK_SKEW_S = 600.0

# The provider's batch statuses on ours (https://platform.openai.com/docs/guides/batch, "Checking the status").
_STATES: dict[str, BatchState] = {
    "validating": "submitted",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
# A batch failed because the organization's enqueued tokens for the model are at their limit
# (https://platform.openai.com/docs/guides/batch, "Batch expiration" and rate limits; the
# `errors.data[].code` of the failed batch object): nothing of it ran, and it may go again later.
_QUEUE_FULL = "token_limit_exceeded"
# Error codes of requests the batch never ran: sending them again is safe and may succeed
# (https://platform.openai.com/docs/api-reference/batch/request-output, `error.code`).
_NOT_RUN = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})


class _InputLine(msgspec.Struct, kw_only=True):
    custom_id: str
    method: str = "POST"
    url: str = ENDPOINT
    body: msgspec.Raw


class _CreateBatch(msgspec.Struct):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]


class _File(msgspec.Struct):
    id: str


class _Counts(msgspec.Struct):
    total: int = 0
    completed: int = 0
    failed: int = 0


class _BatchError(msgspec.Struct):
    code: str | None = None
    message: str | None = None
    line: int | None = None


class _Errors(msgspec.Struct):
    data: list[_BatchError] = []


class _Batch(msgspec.Struct):
    """A view of the batch object: only the fields we read."""

    id: str
    status: str
    created_at: int = 0
    request_counts: _Counts | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: _Errors | None = None
    metadata: dict[str, str] | None = None


class _BatchPage(msgspec.Struct):
    data: list[_Batch] = []
    has_more: bool = False
    last_id: str | None = None


class _Response(msgspec.Struct):
    status_code: int
    body: msgspec.Raw = NULL


class _LineError(msgspec.Struct):
    code: str | None = None
    message: str | None = None


class _OutputLine(msgspec.Struct):
    custom_id: str
    response: _Response | None = None
    error: _LineError | None = None


_encoder = msgspec.json.Encoder()
_file_decoder = msgspec.json.Decoder(_File)
_batch_decoder = msgspec.json.Decoder(_Batch)
_page_decoder = msgspec.json.Decoder(_BatchPage)
_line_decoder = msgspec.json.Decoder(_OutputLine)


class OpenAIBatches:
    """OpenAI's Batch API for one teacher (a `BatchApi`); `base_url` ends in `/v1`, as for sync calls."""

    __slots__ = ("_base", "_http", "limits")

    def __init__(self, http: BatchHttp, *, base_url: str, limits: BatchLimits = LIMITS) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self.limits = limits

    def __repr__(self) -> str:
        return f"OpenAIBatches(teacher={self._http.teacher!r}, base_url={self._base!r})"

    def item_bytes(self, item: BatchItem) -> int:
        """Bytes of the request's line in the input file, newline included."""
        return len(_line(item)) + 1

    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
        """Upload the requests as a JSONL file and create a batch over it remembered by `tag`; returns its id."""
        check_items(items, self.limits, self.item_bytes)
        where = f"batch {tag!r}"
        content = b"".join(_line(item) + b"\n" for item in sorted(items, key=lambda i: i.custom_id))

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("purpose", "batch")
            data.add_field("file", content, filename="committee-batch.jsonl", content_type="application/jsonl")
            return data

        # Uploading twice costs nothing; creating twice would pay twice (see `create_once`).
        upload = await self._http.call("POST", f"{self._base}/files", _file_decoder, where=where, form=form)
        body = _encoder.encode(
            _CreateBatch(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h", metadata={TAG_KEY: tag})
        )
        since = time.time()

        async def create() -> str:
            batch = await self._http.call(
                "POST", f"{self._base}/batches", _batch_decoder, where=where, body=body, resend=False
            )
            return batch.id

        return await create_once(create, lambda: self.find(tag, since=since), attempts=self._http.max_attempts)

    async def find(
        self,
        tag: str,
        *,
        custom_ids: frozenset[str] = frozenset(),
        since: float | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None:
        """The id of the batch whose metadata carries `tag`, None if there is none.

        Pages through `GET /batches` (newest first), back to `since` (a Unix time before the
        batch was planned) when given, else through all of them. `custom_ids` is not needed here.
        """
        params = {"limit": "100"}
        while True:
            page = await self._http.call(
                "GET", f"{self._base}/batches", _page_decoder, where=f"finding batch {tag!r}", params=params
            )
            for batch in page.data:
                if (batch.metadata or {}).get(TAG_KEY) == tag and batch.id not in exclude:
                    return batch.id
                if since is not None and batch.created_at and batch.created_at < since - CLOCK_SKEW_S:
                    return None
            if not page.has_more or not page.data:
                return None
            params = {"limit": "100", "after": page.last_id or page.data[-1].id}

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's state and counts; a failed batch carries the provider's reason."""
        batch = await self._batch(batch_id)
        counts = batch.request_counts or _Counts()
        state = _STATES.get(batch.status, "running")
        error = _batch_error(batch) if state == "failed" else None
        codes = {e.code for e in batch.errors.data} if batch.errors else set()
        return BatchStatus(
            batch_id=batch_id,
            state=state,
            total=counts.total,
            succeeded=counts.completed,
            errored=counts.failed,
            error=error,
            queue_full=state == "failed" and _QUEUE_FULL in codes,
        )

    async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
        """One outcome per request of the finished batch: its output file, then its error file; a
        request in neither (a batch that failed or ended early) comes out as not run, retryable.

        Raises `Permanent` naming the batch, the file and the line for a line that is not a
        result or names a custom_id this batch did not send, once every readable line came out.
        """
        batch = await self._batch(batch_id)
        tally = Tally(custom_ids, lambda reason: self._http.fail(f"batch {batch_id}", reason))
        for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
            if not file_id:
                continue
            where = f"batch {batch_id} ({kind} file {file_id})"
            content = await self._http.download(f"{self._base}/files/{file_id}/content", where=where)
            for number, raw in jsonl_lines(content):
                named = f"line {number} of the {kind} file {file_id}"
                line = tally.read(_line_decoder, raw, named)
                if line is not None and tally.first(line.custom_id, named):
                    yield _outcome(line)
        for outcome in tally.missing(f"no result in batch {batch_id} ({batch.status})"):
            yield outcome

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch; requests already finished keep their results."""
        await self._http.call(
            "POST", f"{self._base}/batches/{batch_id}/cancel", _batch_decoder, where=f"batch {batch_id}", body=b"{}"
        )

    async def _batch(self, batch_id: str) -> _Batch:
        url = f"{self._base}/batches/{batch_id}"
        return await self._http.call("GET", url, _batch_decoder, where=f"batch {batch_id}")


def _line(item: BatchItem) -> bytes:
    return _encoder.encode(_InputLine(custom_id=item.custom_id, body=msgspec.Raw(openai.encode(item.request))))


def _batch_error(batch: _Batch) -> str:
    errors = batch.errors.data if batch.errors else []
    if not errors:
        return "the provider reports the batch failed, without a reason"
    first = errors[0]
    where = f" (input line {first.line})" if first.line is not None else ""
    more = f"; {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{first.code or 'error'}: {first.message or ''}{where}{more}"


def _outcome(line: _OutputLine) -> BatchOutcome:
    if line.response is not None and (line.error is None or line.response.status_code != 200):
        return answered(line.custom_id, openai.decode, line.response.status_code, bytes(line.response.body))
    error = line.error or _LineError()
    message = f"{error.code or 'error'}: {error.message or 'no message'}"
    if error.code in _NOT_RUN:
        return not_run(line.custom_id, message)
    return error_status(line.custom_id, 400, message)
