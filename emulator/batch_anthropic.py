"""Anthropic's Message Batches API, emulated: /v1/messages/batches and its JSONL results.

https://docs.anthropic.com/en/docs/build-with-claude/batch-processing and
https://docs.anthropic.com/en/api/creating-message-batches: a batch is `{requests: [{custom_id,
params}]}`, `params` a Messages API request; processing_status goes in_progress -> ended
(or canceling -> ended); up to 100,000 requests or 256 MB per batch; `custom_id` unique
within the batch, 1 to 64 of [a-zA-Z0-9_-]. `request_counts` move from processing "only once
processing of the entire batch ends" (https://docs.anthropic.com/en/api/retrieving-message-batches),
and the results come "out of request order" (emulated: in reverse). Each result line is
`{custom_id, result: {type: succeeded|errored|canceled|expired, message | error}}`
(https://docs.anthropic.com/en/api/retrieving-message-batch-results). Unlike OpenAI's and
Gemini's, an Anthropic batch carries no metadata or name a client could find it by.
Over the in-flight cap: 429 rate_limit_error, as the processing-queue limit answers
(https://docs.anthropic.com/en/api/rate-limits#message-batches-api).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from emulator.batches import (
    TERMINAL,
    Item,
    Job,
    Outcome,
    json_response,
    jsonl_response,
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

MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
_WIRE = WIRES["anthropic"]
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_PATH = "/v1/messages/batches"


class _Request(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _CreateBatch(msgspec.Struct):
    requests: list[_Request]


_create_decoder = msgspec.json.Decoder(_CreateBatch)


def add_routes(app: web.Application, emu: Emulator) -> None:
    """The Message Batches endpoints, beside /v1/messages."""
    app.router.add_post(_PATH, route(emu, _WIRE, _create))
    app.router.add_get(_PATH, route(emu, _WIRE, _list))
    app.router.add_get(_PATH + "/{batch_id}", route(emu, _WIRE, _retrieve))
    app.router.add_get(_PATH + "/{batch_id}/results", route(emu, _WIRE, _results))
    app.router.add_post(_PATH + "/{batch_id}/cancel", route(emu, _WIRE, _cancel))


async def _create(emu: Emulator, request: web.Request) -> web.Response:
    behaviour = emu.batches.behaviour
    body = await request.read()
    max_bytes = limit(behaviour.max_bytes, MAX_BYTES)
    if len(body) > max_bytes:
        # https://docs.anthropic.com/en/api/errors: 413 request_too_large.
        emu.refused()
        emu.batches.refused += 1
        message = f"Request exceeds the maximum allowed number of bytes ({max_bytes})."
        return json_response({"type": "error", "error": {"type": "request_too_large", "message": message}}, 413)
    try:
        requests = _create_decoder.decode(body).requests
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return refuse_batch(emu, _WIRE, f"invalid request body: {exc}")
    max_requests = limit(behaviour.max_requests, MAX_REQUESTS)
    if not requests or len(requests) > max_requests:
        return refuse_batch(emu, _WIRE, f"requests: must have between 1 and {max_requests} items, got {len(requests)}")
    seen: set[str] = set()
    for i, entry in enumerate(requests):
        if not _CUSTOM_ID.fullmatch(entry.custom_id):
            return refuse_batch(emu, _WIRE, f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        if entry.custom_id in seen:
            return refuse_batch(emu, _WIRE, f"requests.{i}.custom_id: duplicate custom_id {entry.custom_id!r}")
        seen.add(entry.custom_id)
    if emu.batches.over_in_flight("anthropic"):
        status, document = _WIRE.error("rate_limit", "Number of batches in progress exceeds your rate limit.")
        return json_response(document, status)
    items: list[Item] = [parse_item(_WIRE, entry.custom_id, bytes(entry.params)) for entry in requests]
    job = emu.batches.create("anthropic", f"msgbatch_emu{next(serial)}", _WIRE, items)
    return json_response(_batch_object(emu, job))


async def _retrieve(emu: Emulator, request: web.Request) -> web.Response:
    job = _job(emu, request)
    if job is None:
        return _not_found(emu, request)
    return json_response(_batch_object(emu, job))


async def _list(emu: Emulator, request: web.Request) -> web.Response:
    """Newest first, `limit` (1..1000, default 20), after `after_id` or before `before_id`."""
    try:
        size = min(max(int(request.query.get("limit", "20")), 1), 1000)
    except ValueError:
        return refuse(emu, _WIRE, "invalid", "limit: expected an integer")
    jobs = emu.batches.listed("anthropic")
    ids = [job.id for job in jobs]
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if after is not None:
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    elif before is not None:
        jobs = jobs[: ids.index(before)] if before in ids else []
        jobs = jobs[-size:]
    page = [_batch_object(emu, job) for job in jobs[:size]]
    return json_response(
        {
            "data": page,
            "has_more": len(jobs) > size,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


async def _results(emu: Emulator, request: web.Request) -> web.Response:
    job = _job(emu, request)
    if job is None:
        return _not_found(emu, request)
    if job.phase(emu.batches.now()) not in TERMINAL:
        return refuse(emu, _WIRE, "invalid", f"Message batch {job.id} has not ended: its results are not ready yet.")
    return jsonl_response(_result_line(item, outcome) for item, outcome in reversed(list(job.outcomes())))


def _result_line(item: Item, outcome: Outcome) -> dict[str, object]:
    result: dict[str, object] = {"type": _RESULT_TYPE[outcome.kind]}
    if outcome.kind == "succeeded":
        result["message"] = msgspec.Raw(outcome.body)
    elif outcome.kind == "errored":
        result["error"] = msgspec.Raw(outcome.body)
    return {"custom_id": item.custom_id, "result": result}


async def _cancel(emu: Emulator, request: web.Request) -> web.Response:
    job = _job(emu, request)
    if job is None:
        return _not_found(emu, request)
    if not emu.batches.cancel(job):
        return refuse(emu, _WIRE, "invalid", f"Message batch {job.id} has already ended and cannot be canceled.")
    return json_response(_batch_object(emu, job))


def _job(emu: Emulator, request: web.Request) -> Job | None:
    return emu.batches.get("anthropic", request.match_info["batch_id"])


def _not_found(emu: Emulator, request: web.Request) -> web.Response:
    return refuse(emu, _WIRE, "not_found", f"No message batch with id {request.match_info['batch_id']!r}.")


_RESULT_TYPE = {"succeeded": "succeeded", "errored": "errored", "expired": "expired", "cancelled": "canceled"}
_STATUS = {"validating": "in_progress", "in_progress": "in_progress", "cancelling": "canceling"}


def _batch_object(emu: Emulator, job: Job) -> dict[str, object]:
    """https://docs.anthropic.com/en/api/retrieving-message-batches"""
    now = emu.batches.now()
    ended = job.ended_at(now)
    counts = {"processing": len(job.items), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if ended is not None:
        for kind, n in job.counts().items():
            counts[_RESULT_TYPE.get(kind, kind)] = n
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": _STATUS.get(job.phase(now), "ended"),
        "request_counts": counts,
        "ended_at": rfc3339(job.wall(ended) if ended is not None else None),
        "created_at": rfc3339(job.wall(job.created_at)),
        "expires_at": rfc3339(job.wall(job.expire_at)),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(job.wall(job.cancel_at) if job.cancel_at is not None else None),
        "results_url": f"{emu.url}{_PATH}/{job.id}/results" if ended is not None else None,
    }
