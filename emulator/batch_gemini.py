"""Gemini's batch mode, emulated: models/{model}:batchGenerateContent with inline requests, a batch
resource read as a long-running operation, per-request responses inline.

https://ai.google.dev/gemini-api/docs/batch-mode and https://ai.google.dev/api/batch-mode:
`{batch: {displayName, inputConfig: {requests: {requests: [{request, metadata: {key}}]}}}}`
(inline requests up to 20 MB in all); the answer is an Operation named `batches/{id}` whose
`metadata` is the GenerateContentBatch (state BATCH_STATE_PENDING/RUNNING/SUCCEEDED/FAILED/
CANCELLED/EXPIRED, batchStats, output), and once done `response.inlinedResponses
.inlinedResponses`, each `{response | error, metadata}` in request order. Field names are
camelCase, as the REST API writes them and google-genai reads them (`metadata.displayName`,
`metadata.output.inlinedResponses.inlinedResponses`); requests may use either spelling.
A per-request error is a google.rpc.Status (gRPC code number). Over the in-flight cap
(concurrent batch requests, https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode):
429 RESOURCE_EXHAUSTED. Input files (the Files API's resumable upload) are not emulated.
Expired batches keep the responses finished in time and give the rest DEADLINE_EXCEEDED
(the docs do not say; this is the emulator's choice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from emulator.batches import (
    Handler,
    Item,
    Job,
    Outcome,
    json_response,
    limit,
    parse_item,
    refuse,
    refuse_batch,
    rfc3339,
    route,
    serial,
)
from emulator.wire import WIRES

if TYPE_CHECKING:
    from emulator.server import Emulator

MAX_BYTES = 20 * 1024 * 1024
_WIRE = WIRES["gemini"]
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."


class _Metadata(msgspec.Struct):
    key: str | None = None


class _InlinedRequest(msgspec.Struct):
    request: msgspec.Raw
    metadata: _Metadata | None = None


class _Requests(msgspec.Struct):
    requests: list[_InlinedRequest] = []


class _InputConfig(msgspec.Struct):
    requests: _Requests | None = None
    fileName: str | None = None
    file_name: str | None = None


class _Batch(msgspec.Struct):
    displayName: str | None = None
    display_name: str | None = None
    inputConfig: _InputConfig | None = None
    input_config: _InputConfig | None = None


class _CreateBatch(msgspec.Struct):
    batch: _Batch


_create_decoder = msgspec.json.Decoder(_CreateBatch)


def add_routes(app: web.Application, emu: Emulator) -> None:
    """The batch resource's endpoints (creation goes through the models route: `create`)."""
    for path, handler in shared_routes(emu).items():
        app.router.add_get(path.replace("/v1/", "/v1beta/"), handler)
    for version in ("/v1beta", "/v1"):
        app.router.add_post(version + "/batches/{target}", route(emu, _WIRE, _cancel))


def shared_routes(emu: Emulator) -> dict[str, Handler]:
    """The GET routes under /v1 whose paths are OpenAI's too (google-genai calls v1 by default, v1beta also works)."""
    return {"/v1/batches": route(emu, _WIRE, _list), "/v1/batches/{batch_id}": route(emu, _WIRE, _retrieve)}


async def create(emu: Emulator, request: web.Request, model: str) -> web.StreamResponse:
    """`POST models/{model}:batchGenerateContent`, called by the emulator's Gemini route."""
    return await route(emu, _WIRE, lambda emu, request: _create(emu, request, model))(request)


async def _create(emu: Emulator, request: web.Request, model: str) -> web.Response:
    body = await request.read()
    max_bytes = limit(emu.batches.behaviour.max_bytes, MAX_BYTES)
    if len(body) > max_bytes:
        return refuse_batch(emu, _WIRE, f"Request payload size exceeds the limit: {max_bytes} bytes.")
    try:
        batch = _create_decoder.decode(body).batch
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return refuse_batch(emu, _WIRE, f"Invalid JSON payload received. {exc}")
    config = batch.inputConfig or batch.input_config
    if config is not None and (config.fileName or config.file_name):
        return refuse_batch(emu, _WIRE, "The emulator takes inline requests only (inputConfig.requests), not a file.")
    requests = config.requests.requests if config is not None and config.requests is not None else []
    max_requests = emu.batches.behaviour.max_requests
    if not requests or (max_requests is not None and len(requests) > max_requests):
        return refuse_batch(
            emu, _WIRE, f"batch.input_config.requests: {len(requests)} requests; give 1 to {max_requests or 'any'}."
        )
    if emu.batches.over_in_flight("gemini"):
        status, document = _WIRE.error("rate_limit", "Too many concurrent batch jobs. Wait for one to finish.")
        return json_response(document, status)
    items: list[Item] = []
    for i, entry in enumerate(requests):
        key = entry.metadata.key if entry.metadata is not None and entry.metadata.key is not None else f"#{i}"
        items.append(parse_item(_WIRE, key, bytes(entry.request), model))
    name = f"batches/emu{next(serial)}"
    job = emu.batches.create("gemini", name, _WIRE, items, tag=batch.displayName or batch.display_name, model=model)
    return json_response(_operation(emu, job))


async def _retrieve(emu: Emulator, request: web.Request) -> web.Response:
    job = emu.batches.get("gemini", "batches/" + request.match_info["batch_id"])
    if job is None:
        return _not_found(emu, request)
    return json_response(_operation(emu, job))


async def _cancel(emu: Emulator, request: web.Request) -> web.Response:
    name, _, method = request.match_info["target"].partition(":")
    if method != "cancel":
        return refuse(emu, _WIRE, "not_found", f"method {method!r} is not emulated")
    job = emu.batches.get("gemini", "batches/" + name)
    if job is None:
        return _not_found(emu, request)
    if not emu.batches.cancel(job):
        return refuse(emu, _WIRE, "invalid", f"Batch batches/{name} has already ended.")
    return json_response({})


async def _list(emu: Emulator, request: web.Request) -> web.Response:
    """Newest first, `pageSize` (default 50) from `pageToken` (an offset here)."""
    try:
        size = max(int(request.query.get("pageSize", "50")), 1)
        start = int(request.query.get("pageToken", "0") or "0")
    except ValueError:
        return refuse(emu, _WIRE, "invalid", "Invalid pageSize or pageToken.")
    jobs = emu.batches.listed("gemini")
    document: dict[str, object] = {"operations": [_operation(emu, job) for job in jobs[start : start + size]]}
    if start + size < len(jobs):
        document["nextPageToken"] = str(start + size)
    return json_response(document)


def _not_found(emu: Emulator, request: web.Request) -> web.Response:
    name = request.match_info.get("batch_id") or request.match_info["target"].partition(":")[0]
    return refuse(emu, _WIRE, "not_found", f"Batch batches/{name} not found.")


_STATE = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    # Gemini has no cancelling state: the batch runs until it is cancelled.
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}
# google.rpc.Code numbers (https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto).
_GRPC = {"CANCELLED": 1, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "INTERNAL": 13}
_UNRUN = {
    "expired": ("DEADLINE_EXCEEDED", "The batch expired before this request ran."),
    "cancelled": ("CANCELLED", "The batch was cancelled before this request ran."),
}


def _operation(emu: Emulator, job: Job) -> dict[str, object]:
    """The batch as the long-running Operation that creation and polling return."""
    now = emu.batches.now()
    phase = job.phase(now)
    ended = job.ended_at(now)
    counts = job.counts()
    batch: dict[str, object] = {
        "@type": _TYPE + "GenerateContentBatch",
        "model": f"models/{job.model}",
        "displayName": job.tag,
        "createTime": rfc3339(job.wall(job.created_at)),
        "updateTime": rfc3339(job.wall(now)),
        # int64 fields are strings in Google's JSON.
        "batchStats": {
            "requestCount": str(len(job.items)),
            "pendingRequestCount": str(counts["processing"]),
            "successfulRequestCount": str(counts["succeeded"]),
            "failedRequestCount": str(counts["errored"] + counts["expired"] + counts["cancelled"]),
        },
        "state": _STATE[phase],
        "name": job.id,
    }
    operation: dict[str, object] = {"name": job.id, "metadata": batch}
    if ended is not None:
        batch["endTime"] = rfc3339(job.wall(ended))
        output = {
            "inlinedResponses": {"inlinedResponses": [_response(item, outcome) for item, outcome in job.outcomes()]}
        }
        batch["output"] = output
        operation["done"] = True
        operation["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
    return operation


def _response(item: Item, outcome: Outcome) -> dict[str, object]:
    # A request sent without a metadata key was named by its index ("#3"); nothing to echo then.
    entry: dict[str, object] = {} if item.custom_id.startswith("#") else {"metadata": {"key": item.custom_id}}
    if outcome.kind == "succeeded":
        entry["response"] = msgspec.Raw(outcome.body)
        return entry
    if outcome.kind in _UNRUN:
        status, message = _UNRUN[outcome.kind]
    else:
        error = msgspec.json.decode(outcome.body)["error"]
        status, message = error["status"], error["message"]
    entry["error"] = {"code": _GRPC.get(status, 2), "message": message}  # 2: UNKNOWN
    return entry
