"""OpenAI's Batch API, emulated: a JSONL file uploaded to /v1/files, a batch over it, output and error files.

https://platform.openai.com/docs/guides/batch and https://platform.openai.com/docs/api-reference/batch:
each input line is `{custom_id, method, url, body}`; a batch validates its file and goes
`failed` with `errors.data` (code, line, message) when the file is wrong, else
in_progress -> completed (or expired after its 24 h window, or cancelling -> cancelled).
A finished batch has an output file (one line per answered request, `response.body` the
chat completion) and an error file (requests answered with an error status, expired or
cancelled ones with `error`), each only when it has lines. Limits: 50,000 requests and
200 MB per input file, one model per batch (https://platform.openai.com/docs/api-reference/batch/create).
The validation error codes are the documented ones (invalid_json_line, duplicate_custom_id,
url_mismatch, model_mismatch, empty_file, too_many_tasks); `file_too_large` and the in-flight
cap's `token_limit_exceeded` (OpenAI's own cap is enqueued tokens per model, counted here as
batches) stand in for answers whose exact wording we have not seen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from emulator.batches import (
    TERMINAL,
    Handler,
    Item,
    Job,
    StoredFile,
    json_response,
    limit,
    parse_item,
    refuse,
    route,
    serial,
)
from emulator.wire import WIRES

if TYPE_CHECKING:
    from emulator.server import Emulator

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
ENDPOINT = "/v1/chat/completions"
_WIRE = WIRES["openai"]
_encoder = msgspec.json.Encoder()


class _Line(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class _ModelView(msgspec.Struct):
    model: str = ""


class _CreateBatch(msgspec.Struct):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


_line_decoder = msgspec.json.Decoder(_Line)
_model_decoder = msgspec.json.Decoder(_ModelView)
_create_decoder = msgspec.json.Decoder(_CreateBatch)


def add_routes(app: web.Application, emu: Emulator) -> None:
    """The Files and Batch endpoints, beside chat completions under /v1."""
    app.router.add_post("/v1/files", route(emu, _WIRE, _upload))
    app.router.add_get("/v1/files/{file_id}", route(emu, _WIRE, _file))
    app.router.add_get("/v1/files/{file_id}/content", route(emu, _WIRE, _file_content))
    app.router.add_post("/v1/batches", route(emu, _WIRE, _create))
    app.router.add_post("/v1/batches/{batch_id}/cancel", route(emu, _WIRE, _cancel))


def shared_routes(emu: Emulator) -> dict[str, Handler]:
    """The GET routes whose paths Gemini's v1 batches use too (the emulator tells them apart by key header)."""
    return {"/v1/batches": route(emu, _WIRE, _list), "/v1/batches/{batch_id}": route(emu, _WIRE, _retrieve)}


# --- files ---------------------------------------------------------------------------------------


async def _upload(emu: Emulator, request: web.Request) -> web.Response:
    form = await request.post()
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, web.FileField):
        return refuse(emu, _WIRE, "invalid", "Missing required parameter: 'file'.")
    if purpose != "batch":
        return refuse(emu, _WIRE, "invalid", f"The emulator takes files of purpose 'batch' only, got {purpose!r}.")
    file_id = f"file-emu{next(serial)}"
    emu.batches.files[file_id] = StoredFile(upload.filename, "batch", upload.file.read(), int(time.time()))
    return json_response(_file_object(file_id, emu.batches.files[file_id]))


async def _file(emu: Emulator, request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    stored = emu.batches.files.get(file_id)
    if stored is None:
        return _no_file(emu, file_id)
    return json_response(_file_object(file_id, stored))


async def _file_content(emu: Emulator, request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    stored = emu.batches.files.get(file_id)
    if stored is None:
        return _no_file(emu, file_id)
    return web.Response(body=stored.data, content_type="application/octet-stream")


def _file_object(file_id: str, stored: StoredFile) -> dict[str, object]:
    # https://platform.openai.com/docs/api-reference/files/object
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(stored.data),
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def _no_file(emu: Emulator, file_id: str) -> web.Response:
    return refuse(emu, _WIRE, "not_found", f"No such File object: {file_id}")


# --- batches -------------------------------------------------------------------------------------


async def _create(emu: Emulator, request: web.Request) -> web.Response:
    try:
        ask = _create_decoder.decode(await request.read())
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return refuse(emu, _WIRE, "invalid", f"invalid request body: {exc}")
    if ask.endpoint != ENDPOINT:
        return refuse(emu, _WIRE, "invalid", f"The emulator batches {ENDPOINT} only, got endpoint {ask.endpoint!r}.")
    if ask.completion_window != "24h":
        return refuse(emu, _WIRE, "invalid", "Invalid 'completion_window': only '24h' is supported.")
    stored = emu.batches.files.get(ask.input_file_id)
    if stored is None:
        return _no_file(emu, ask.input_file_id)
    items, model, errors = _read_input(emu, stored.data)
    if errors is None and emu.batches.over_in_flight("openai"):
        message = "Enqueued limit reached: too many batches in progress. Wait for one to finish."
        errors = [_error("token_limit_exceeded", message)]
    job_id = f"batch_emu{next(serial)}"
    job = emu.batches.create("openai", job_id, _WIRE, items, tag=ask.metadata, model=model, errors=errors)
    job.files["input"] = ask.input_file_id
    return json_response(_batch_object(emu, job))


def _read_input(emu: Emulator, data: bytes) -> tuple[list[Item], str, list[dict[str, object]] | None]:
    """The requests of an input file, its one model, and the validation errors that fail the batch (None: valid)."""
    behaviour = emu.batches.behaviour
    max_bytes = limit(behaviour.max_bytes, MAX_BYTES)
    if len(data) > max_bytes:
        return [], "", [_error("file_too_large", f"The input file is {len(data)} bytes; the limit is {max_bytes}.")]
    items: list[Item] = []
    errors: list[dict[str, object]] = []
    seen: set[str] = set()
    models: set[str] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = _line_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            errors.append(_error("invalid_request", f"This line is not a valid batch request: {exc}.", number))
            continue
        except msgspec.DecodeError:
            errors.append(_error("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        if line.url != ENDPOINT:
            message = "The url provided for this request does not match the batch endpoint."
            errors.append(_error("url_mismatch", message, number))
        if line.custom_id in seen:
            message = "The custom_id for this request is a duplicate of another request. It must be unique."
            errors.append(_error("duplicate_custom_id", message, number))
        seen.add(line.custom_id)
        body = bytes(line.body)
        item = parse_item(_WIRE, line.custom_id, body)
        model = item.ask.model if item.ask is not None else _loose_model(body)
        if models and model not in models:
            errors.append(_error("model_mismatch", "The model in this request differs from the batch's model.", number))
        models.add(model)
        items.append(item)
    max_requests = limit(behaviour.max_requests, MAX_REQUESTS)
    if not items and not errors:
        errors.append(_error("empty_file", "The input file is empty. Please provide a non-empty file."))
    elif len(items) > max_requests:
        message = f"The input file has {len(items)} requests; the limit is {max_requests}."
        errors.append(_error("too_many_tasks", message))
    return items, next(iter(models), ""), errors or None


def _loose_model(body: bytes) -> str:
    try:
        return _model_decoder.decode(body).model
    except msgspec.MsgspecError:
        return ""


def _error(code: str, message: str, line: int | None = None) -> dict[str, object]:
    return {"code": code, "message": message, "param": None, "line": line}


async def _retrieve(emu: Emulator, request: web.Request) -> web.Response:
    job = emu.batches.get("openai", request.match_info["batch_id"])
    if job is None:
        return refuse(emu, _WIRE, "not_found", f"No batch found with id '{request.match_info['batch_id']}'.")
    return json_response(_batch_object(emu, job))


async def _list(emu: Emulator, request: web.Request) -> web.Response:
    """Newest first, `limit` (1..100, default 20) after the batch id `after`."""
    try:
        size = min(max(int(request.query.get("limit", "20")), 1), 100)
    except ValueError:
        return refuse(emu, _WIRE, "invalid", "Invalid 'limit': expected an integer.")
    jobs = emu.batches.listed("openai")
    after = request.query.get("after")
    if after is not None:
        ids = [job.id for job in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    page = [_batch_object(emu, job) for job in jobs[:size]]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(jobs) > size,
        }
    )


async def _cancel(emu: Emulator, request: web.Request) -> web.Response:
    job = emu.batches.get("openai", request.match_info["batch_id"])
    if job is None:
        return refuse(emu, _WIRE, "not_found", f"No batch found with id '{request.match_info['batch_id']}'.")
    if not emu.batches.cancel(job):
        status = job.phase(emu.batches.now())
        return refuse(emu, _WIRE, "invalid", f"Cannot cancel a batch with status '{status}'.")
    return json_response(_batch_object(emu, job))


def _batch_object(emu: Emulator, job: Job) -> dict[str, object]:
    """https://platform.openai.com/docs/api-reference/batch/object"""
    now = emu.batches.now()
    phase = job.phase(now)
    ended = job.ended_at(now)
    if phase in TERMINAL:
        _write_files(emu, job)
    counts = job.counts()
    validated = job.errors is None and now >= job.validated_at

    def at(moment: float | None, shown: bool = True) -> int | None:
        return int(job.wall(moment)) if moment is not None and shown else None

    return {
        "id": job.id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "model": job.model or None,
        "errors": {"object": "list", "data": job.errors} if job.errors and phase == "failed" else None,
        "input_file_id": job.files["input"],
        "completion_window": "24h",
        # Our phases are OpenAI's statuses (finalizing is skipped: the files are ready at once).
        "status": phase,
        "output_file_id": job.files.get("output"),
        "error_file_id": job.files.get("error"),
        "created_at": at(job.created_at),
        "in_progress_at": at(job.validated_at, validated),
        "expires_at": at(job.expire_at),
        "finalizing_at": at(ended, phase == "completed"),
        "completed_at": at(ended, phase == "completed"),
        "failed_at": at(ended, phase == "failed"),
        "expired_at": at(ended, phase == "expired"),
        "cancelling_at": at(job.cancel_at),
        "cancelled_at": at(ended, phase == "cancelled"),
        "request_counts": {
            "total": len(job.items) if validated else 0,
            "completed": counts["succeeded"],
            "failed": counts["errored"] + counts["expired"] + counts["cancelled"],
        },
        "metadata": job.tag,
    }


_UNRUN = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was cancelled before it could be executed."),
}


def _write_files(emu: Emulator, job: Job) -> None:
    """The output and error files of an ended batch, once; each only when it has lines."""
    if job.written:
        return
    job.written = True
    output: list[bytes] = []
    failed: list[bytes] = []
    for item, outcome in job.outcomes():
        line: dict[str, object] = {"id": f"batch_req_emu{next(serial)}", "custom_id": item.custom_id}
        if outcome.kind in _UNRUN:
            code, message = _UNRUN[outcome.kind]
            line.update(response=None, error={"code": code, "message": message})
        else:
            # A request answered with an error status keeps `error` null: the error is the response's body.
            request_id = f"req_emu{next(serial)}"
            response = {"status_code": outcome.status, "request_id": request_id, "body": msgspec.Raw(outcome.body)}
            line.update(response=response, error=None)
        (output if outcome.kind == "succeeded" else failed).append(_encoder.encode(line) + b"\n")
    for kind, lines in (("output", output), ("error", failed)):
        if lines:
            file_id = f"file-emu{next(serial)}"
            name = f"{job.id}_{kind}.jsonl"
            emu.batches.files[file_id] = StoredFile(name, f"batch_{kind}", b"".join(lines), int(time.time()))
            job.files[kind] = file_id
