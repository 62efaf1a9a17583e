"""Gemini's Batch API with inline requests: `models/{model}:batchGenerateContent`, a long-running
operation named `batches/{id}`, per-request responses inline in it.

Guide: https://ai.google.dev/gemini-api/docs/batch-mode
Reference: https://ai.google.dev/api/batch-mode (batchGenerateContent, batches.get / list / cancel;
GenerateContentBatch, InlinedRequest, InlinedResponse, BatchStats, BatchState, Operation).

Each inline request is `{request, metadata: {key: custom_id}}` with the sync adapter's body;
each response `{metadata, response | error}`, the response read by the sync adapter's `decode`.
Responses come "in the same order as the input requests", and not every response echoes its
metadata (https://discuss.ai.google.dev/t/gemini-batch-api-doesnt-return-the-user-metadata-back/112386):
requests go out sorted by custom_id, so response i belongs to the i-th of the sorted custom_ids
even after a restart. The batch's `displayName` is our tag; `batches.list` finds it again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import quote

import msgspec

from adapters import gemini
from adapters.batch.http import NULL, BatchHttp, Tally, answered, create_once, error_status, not_run
from adapters.batch.packing import check_items
from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchState, BatchStatus

# Inline requests: "suitable for smaller batches that keep the total request size under 20MB"
# (https://ai.google.dev/gemini-api/docs/batch-mode#inline-requests); 100 concurrent batch requests
# (https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode). No request count is documented
# for inline batches; the bytes bind long before 50,000 of our requests.
LIMITS = BatchLimits(max_requests=50_000, max_bytes=20_000_000 - 1024, max_in_flight=100)

# https://ai.google.dev/api/batch-mode#v1beta.BatchState, on ours.
_STATES: dict[str, BatchState] = {
    "UNSPECIFIED": "submitted",
    "PENDING": "submitted",
    "RUNNING": "running",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
}
# google.rpc.Code of a failed request as the HTTP status the sync API answers it with
# (https://cloud.google.com/apis/design/errors#handling_errors), classified like a sync answer.
_CODE_STATUS = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 16: 401}
_CANCELLED = 1


class _InlinedRequest(msgspec.Struct):
    request: msgspec.Raw
    metadata: dict[str, str]


class _InlinedRequests(msgspec.Struct):
    requests: list[_InlinedRequest]


class _InputConfig(msgspec.Struct):
    requests: _InlinedRequests


class _NewBatch(msgspec.Struct):
    displayName: str
    inputConfig: _InputConfig


class _Create(msgspec.Struct):
    batch: _NewBatch


class _Status(msgspec.Struct):
    """google.rpc.Status: https://ai.google.dev/api/files#v1beta.Status"""

    code: int = 0
    message: str = ""


class _InlinedResponse(msgspec.Struct):
    response: msgspec.Raw = NULL
    error: _Status | None = None
    metadata: dict[str, object] | None = None


class _InlinedResponses(msgspec.Struct):
    inlinedResponses: list[_InlinedResponse] = []


class _Output(msgspec.Struct):
    inlinedResponses: _InlinedResponses | None = None
    responsesFile: str | None = None


class _Stats(msgspec.Struct):
    # int64 figures come as strings in proto JSON.
    requestCount: int | str = 0
    successfulRequestCount: int | str = 0
    failedRequestCount: int | str = 0


class _Meta(msgspec.Struct):
    """The GenerateContentBatch in the operation's metadata: only the fields we read."""

    displayName: str = ""
    state: str = ""
    batchStats: _Stats | None = None
    output: _Output | None = None


class _Operation(msgspec.Struct):
    name: str
    metadata: _Meta | None = None
    done: bool = False
    error: _Status | None = None
    response: _Output | None = None


class _OperationPage(msgspec.Struct):
    operations: list[_Operation] = []
    nextPageToken: str = ""


_encoder = msgspec.json.Encoder()
_operation_decoder = msgspec.json.Decoder(_Operation)
_page_decoder = msgspec.json.Decoder(_OperationPage)
_empty_decoder = msgspec.json.Decoder(dict[str, object])


class GeminiBatches:
    """Gemini's Batch API for one teacher (a `BatchApi`); `base_url` is the host, as for sync calls."""

    __slots__ = ("_base", "_http", "limits")

    def __init__(self, http: BatchHttp, *, base_url: str, limits: BatchLimits = LIMITS) -> None:
        self._http = http
        self._base = base_url.rstrip("/") + "/v1beta"
        self.limits = limits

    def __repr__(self) -> str:
        return f"GeminiBatches(teacher={self._http.teacher!r}, base_url={self._base!r})"

    def item_bytes(self, item: BatchItem) -> int:
        """Bytes of the inline request in the batch's `requests` array, its comma included."""
        return len(_encoder.encode(_inlined(item))) + 1

    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
        """Create a batch of `items` inline, `displayName` = `tag`; returns its name (`batches/...`)."""
        check_items(items, self.limits, self.item_bytes)
        ordered = sorted(items, key=lambda i: i.custom_id)
        body = _encoder.encode(
            _Create(
                _NewBatch(displayName=tag, inputConfig=_InputConfig(_InlinedRequests([_inlined(i) for i in ordered])))
            )
        )
        url = f"{self._base}/models/{quote(items[0].request.model, safe='')}:batchGenerateContent"
        since = time.time()

        async def create() -> str:
            operation = await self._http.call(
                "POST", url, _operation_decoder, where=f"batch {tag!r}", body=body, resend=False
            )
            return operation.name

        return await create_once(create, lambda: self.find(tag, since=since), attempts=self._http.max_attempts)

    async def find(
        self,
        tag: str,
        *,
        custom_ids: frozenset[str] = frozenset(),
        since: float | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None:
        """The name of the batch whose `displayName` is `tag`, None if there is none (every page of `batches.list`)."""
        params = {"pageSize": "100"}
        while True:
            page = await self._http.call(
                "GET", f"{self._base}/batches", _page_decoder, where=f"finding batch {tag!r}", params=params
            )
            for operation in page.operations:
                if operation.metadata and operation.metadata.displayName == tag and operation.name not in exclude:
                    return operation.name
            if not page.nextPageToken:
                return None
            params = {"pageSize": "100", "pageToken": page.nextPageToken}

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's state and counts; a failed batch carries the provider's reason."""
        operation = await self._operation(batch_id)
        meta = operation.metadata or _Meta()
        state = _STATES.get(meta.state.rsplit("_STATE_", 1)[-1], "running")
        stats = meta.batchStats or _Stats()
        error = None
        if state == "failed":
            reason = operation.error.message if operation.error else ""
            error = reason or "the provider reports the batch failed, without a reason"
        return BatchStatus(
            batch_id=batch_id,
            state=state,
            total=_count(stats.requestCount),
            succeeded=_count(stats.successfulRequestCount),
            errored=_count(stats.failedRequestCount),
            error=error,
        )

    async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
        """One outcome per request of the finished batch, matched by `metadata.key` or else by position.

        Raises `Permanent` naming the batch and the response for a key this batch did not send,
        or for responses that cannot be matched to requests (a different count and no keys),
        once every response that can be matched came out.
        """
        operation = await self._operation(batch_id)
        where = f"batch {batch_id}"
        output = operation.response or (operation.metadata.output if operation.metadata else None)
        if output is not None and output.responsesFile and output.inlinedResponses is None:
            raise self._http.fail(where, f"results are in file {output.responsesFile}, not inline as requested")
        responses = output.inlinedResponses.inlinedResponses if output and output.inlinedResponses else []
        ordered = sorted(custom_ids)
        tally = Tally(custom_ids, lambda reason: self._http.fail(where, reason))
        for number, response in enumerate(responses, start=1):
            key = (response.metadata or {}).get("key")
            if key is None:
                if len(responses) != len(ordered):
                    tally.problem(
                        f"response {number} has no metadata.key and {len(responses)} responses came back "
                        f"for {len(ordered)} requests: cannot tell which request it answers"
                    )
                    continue
                key = ordered[number - 1]
            if tally.first(key, f"response {number}"):
                assert isinstance(key, str)
                yield _outcome(key, response)
        state = (operation.metadata.state if operation.metadata else "") or "no state"
        for outcome in tally.missing(f"no result in batch {batch_id} ({state})"):
            yield outcome

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch; requests already finished keep their results."""
        await self._http.call(
            "POST", f"{self._base}/{batch_id}:cancel", _empty_decoder, where=f"batch {batch_id}", body=b"{}"
        )

    async def _operation(self, batch_id: str) -> _Operation:
        return await self._http.call("GET", f"{self._base}/{batch_id}", _operation_decoder, where=f"batch {batch_id}")


def _inlined(item: BatchItem) -> _InlinedRequest:
    return _InlinedRequest(request=msgspec.Raw(gemini.encode(item.request)), metadata={"key": item.custom_id})


def _count(value: int | str) -> int:
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


def _outcome(custom_id: str, response: _InlinedResponse) -> BatchOutcome:
    if bytes(response.response) != bytes(NULL):
        return answered(custom_id, gemini.decode, 200, bytes(response.response))
    error = response.error or _Status(code=13, message="neither a response nor an error came back")
    if error.code == _CANCELLED:
        return not_run(custom_id, f"request cancelled before it ran: {error.message}")
    return error_status(custom_id, _CODE_STATUS.get(error.code, 500), f"code {error.code}: {error.message}")
