"""The emulator's Batch APIs, spoken to with plain aiohttp: OpenAI (files + batches), Anthropic
(message batches), Gemini (batchGenerateContent). Time is a fake clock the tests step by hand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from emulator import BatchBehaviour, Emulator, EmulatorSpec, ModelLimits, run_emulator

KEY = "emulator-key"
OPENAI_AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def batch_emulator(**behaviour: object) -> AsyncIterator[tuple[Emulator, FakeClock, aiohttp.ClientSession]]:
    """An emulator whose batches take `BatchBehaviour(**behaviour)`, on a fake clock, and a session to it."""
    clock = FakeClock()
    spec = EmulatorSpec(batch=BatchBehaviour(**behaviour))  # type: ignore[arg-type]
    async with run_emulator(spec, clock=clock) as emu, aiohttp.ClientSession(emu.url) as http:
        yield emu, clock, http


def chat_body(text: str, model: str = "gpt-m") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64, "temperature": 0}


# --- OpenAI ----------------------------------------------------------------------------------------


def openai_line(custom_id: str, text: str, model: str = "gpt-m", url: str = "/v1/chat/completions") -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": chat_body(text, model)}
    return json.dumps(line).encode()


async def openai_upload(http: aiohttp.ClientSession, lines: list[bytes]) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", b"\n".join(lines) + b"\n", filename="input.jsonl", content_type="application/jsonl")
    async with http.post("/v1/files", data=form, headers=OPENAI_AUTH) as response:
        assert response.status == 200, await response.text()
        document = await response.json()
    assert document["object"] == "file" and document["purpose"] == "batch"
    return document["id"]


async def openai_batch(http: aiohttp.ClientSession, lines: list[bytes], metadata: dict | None = None) -> dict:
    file_id = await openai_upload(http, lines)
    body = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": metadata,
    }
    async with http.post("/v1/batches", json=body, headers=OPENAI_AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def openai_get(http: aiohttp.ClientSession, path: str) -> dict:
    async with http.get(path, headers=OPENAI_AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def openai_file_lines(http: aiohttp.ClientSession, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    async with http.get(f"/v1/files/{file_id}/content", headers=OPENAI_AUTH) as response:
        assert response.status == 200
        text = await response.text()
    lines = [json.loads(line) for line in text.splitlines()]
    return {line["custom_id"]: line for line in lines}


@pytest.mark.anyio
async def test_openai_batch_runs_on_the_clock_and_bills_each_request_once_at_batch_price() -> None:
    async with batch_emulator(validate_s=1.0, delay_s=4.0) as (emu, clock, http):
        lines = [openai_line(f"req-{i}", f"question {i}") for i in range(4)]
        batch = await openai_batch(http, lines, metadata={"run": "r1"})
        assert batch["status"] == "validating" and batch["request_counts"]["total"] == 0
        assert batch["output_file_id"] is None and batch["metadata"] == {"run": "r1"}

        clock.now += 3.0  # validated at +1 s, then one request a second: two done
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
        assert batch["status"] == "in_progress"
        assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
        assert emu.stats().total.batch_billed == 2

        clock.now += 2.0
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
        assert batch["status"] == "completed" and batch["completed_at"] is not None
        assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
        assert batch["error_file_id"] is None
        output = await openai_file_lines(http, batch["output_file_id"])

    assert sorted(output) == [f"req-{i}" for i in range(4)]
    for i in range(4):
        line = output[f"req-{i}"]
        assert line["error"] is None and line["response"]["status_code"] == 200
        completion = line["response"]["body"]
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["content"] == f"Echo: question {i}"  # the sync path's answer
    stats = emu.stats().total
    assert stats.batch_requests == 4 and stats.batch_billed == 4 and stats.billed_requests == 4
    assert stats.batch_input_tokens == stats.billed_input_tokens > 0
    assert stats.batch_output_tokens == stats.billed_output_tokens > 0
    assert stats.received == 0  # nothing went through the sync path
    model = emu.stats().models["gpt-m"]
    assert model.batch_ids == {f"req-{i}": 1 for i in range(4)}
    assert sorted(model.billed_keys.values()) == [1, 1, 1, 1]


@pytest.mark.anyio
async def test_openai_sync_and_batch_billing_are_told_apart_and_a_repeat_is_counted() -> None:
    async with batch_emulator(delay_s=1.0) as (emu, clock, http):
        batch = await openai_batch(http, [openai_line("a", "same question")])
        clock.now += 1.0
        await openai_get(http, f"/v1/batches/{batch['id']}")
        async with http.post("/v1/chat/completions", json=chat_body("same question"), headers=OPENAI_AUTH) as r:
            assert r.status == 200
        stats = emu.stats().models["gpt-m"]
    assert stats.billed_requests == 2 and stats.batch_billed == 1
    assert stats.billed_input_tokens == 2 * stats.batch_input_tokens
    # The same content billed through both paths: a client that paid twice is caught.
    assert list(stats.billed_keys.values()) == [2] and stats.duplicates == 1


@pytest.mark.anyio
async def test_openai_error_share_fills_the_error_file_and_is_not_billed() -> None:
    async with batch_emulator(delay_s=1.0, error_share=1.0) as (emu, clock, http):
        batch = await openai_batch(http, [openai_line(f"r{i}", f"q{i}") for i in range(3)])
        clock.now += 1.0
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
        assert batch["status"] == "completed"
        assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
        assert batch["output_file_id"] is None
        errors = await openai_file_lines(http, batch["error_file_id"])
    assert sorted(errors) == ["r0", "r1", "r2"]
    for line in errors.values():
        # OpenAI puts a failed request's error in the response body and leaves `error` null.
        assert line["error"] is None and line["response"]["status_code"] == 500
        assert line["response"]["body"]["error"]["type"] == "server_error"
    stats = emu.stats().total
    assert stats.batch_errored == 3 and stats.billed_requests == 0


@pytest.mark.anyio
async def test_openai_expiry_returns_unfinished_requests_expired_and_unbilled() -> None:
    async with batch_emulator(delay_s=10.0, expire_after_s=5.0) as (emu, clock, http):
        batch = await openai_batch(http, [openai_line(f"r{i}", f"q{i}") for i in range(4)])
        clock.now += 6.0  # requests finish at +2.5, +5, +7.5, +10: two made it
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
        assert batch["status"] == "expired" and batch["expired_at"] is not None
        assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
        output = await openai_file_lines(http, batch["output_file_id"])
        errors = await openai_file_lines(http, batch["error_file_id"])
    assert sorted(output) == ["r0", "r1"] and sorted(errors) == ["r2", "r3"]
    assert errors["r2"]["response"] is None and errors["r2"]["error"]["code"] == "batch_expired"
    stats = emu.stats().total
    assert stats.batch_billed == 2 and stats.batch_expired == 2


@pytest.mark.anyio
async def test_openai_cancel_goes_through_cancelling_and_bills_only_what_finished() -> None:
    async with batch_emulator(delay_s=4.0, cancel_s=1.0) as (emu, clock, http):
        batch = await openai_batch(http, [openai_line(f"r{i}", f"q{i}") for i in range(4)])
        clock.now += 1.0
        async with http.post(f"/v1/batches/{batch['id']}/cancel", headers=OPENAI_AUTH) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "cancelling"
        clock.now += 1.0
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
        assert batch["status"] == "cancelled" and batch["cancelled_at"] is not None
        errors = await openai_file_lines(http, batch["error_file_id"])
        async with http.post(f"/v1/batches/{batch['id']}/cancel", headers=OPENAI_AUTH) as response:
            assert response.status == 400  # an ended batch cannot be cancelled
    assert sorted(errors) == ["r1", "r2", "r3"]
    assert all(line["error"]["code"] == "batch_cancelled" for line in errors.values())
    stats = emu.stats().total
    assert stats.batch_billed == 1 and stats.batch_cancelled == 3


@pytest.mark.anyio
async def test_openai_list_finds_a_batch_by_its_metadata_page_by_page() -> None:
    async with batch_emulator() as (_emu, _clock, http):
        ids = [(await openai_batch(http, [openai_line("a", "q")], metadata={"tag": f"t{i}"}))["id"] for i in range(3)]
        first = await openai_get(http, "/v1/batches?limit=2")
        assert [b["id"] for b in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
        rest = await openai_get(http, f"/v1/batches?limit=2&after={first['last_id']}")
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    found = [b["id"] for b in first["data"] + rest["data"] if b["metadata"] == {"tag": "t0"}]
    assert found == [ids[0]]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("lines", "behaviour", "code", "line"),
    [
        ([b'{"custom_id": "a", "method": "POST"', b""], {}, "invalid_json_line", 1),
        ([openai_line("a", "q"), openai_line("a", "q2")], {}, "duplicate_custom_id", 2),
        ([openai_line("a", "q"), openai_line("b", "q", url="/v1/embeddings")], {}, "url_mismatch", 2),
        ([openai_line("a", "q"), openai_line("b", "q", model="other")], {}, "model_mismatch", 2),
        ([openai_line(f"r{i}", "q") for i in range(3)], {"max_requests": 2}, "too_many_tasks", None),
        ([openai_line("a", "q" * 200)], {"max_bytes": 100}, "file_too_large", None),
    ],
)
async def test_openai_a_bad_input_file_fails_the_batch_with_the_documented_error(
    lines: list[bytes], behaviour: dict, code: str, line: int | None
) -> None:
    async with batch_emulator(**behaviour) as (emu, clock, http):
        batch = await openai_batch(http, lines)
        clock.now += 0.5
        batch = await openai_get(http, f"/v1/batches/{batch['id']}")
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["errors"]["data"][0]["code"] == code and batch["errors"]["data"][0]["line"] == line
    assert emu.stats().total.billed_requests == 0


@pytest.mark.anyio
async def test_openai_batches_in_flight_over_the_cap_fail_and_free_up_when_one_ends() -> None:
    async with batch_emulator(max_in_flight=1, delay_s=2.0) as (emu, clock, http):
        first = await openai_batch(http, [openai_line("a", "q")])
        second = await openai_batch(http, [openai_line("a", "q")])
        second = await openai_get(http, f"/v1/batches/{second['id']}")
        assert second["status"] == "failed" and second["errors"]["data"][0]["code"] == "token_limit_exceeded"
        clock.now += 2.0
        assert (await openai_get(http, f"/v1/batches/{first['id']}"))["status"] == "completed"
        third = await openai_batch(http, [openai_line("a", "q")])
    assert third["status"] == "in_progress"
    assert emu.stats().batches_refused == 1 and emu.stats().batches_created == 3


@pytest.mark.anyio
async def test_openai_batch_work_leaves_the_sync_rate_limit_alone() -> None:
    clock = FakeClock()
    spec = EmulatorSpec(models={"gpt-m": ModelLimits(rpm=1)}, batch=BatchBehaviour(delay_s=1.0))
    async with run_emulator(spec, clock=clock) as emu, aiohttp.ClientSession(emu.url) as http:
        batch = await openai_batch(http, [openai_line(f"r{i}", f"q{i}") for i in range(5)])
        clock.now += 1.0
        assert (await openai_get(http, f"/v1/batches/{batch['id']}"))["status"] == "completed"
        # The one request a minute is still there for the sync path, and only one.
        statuses = []
        for text in ("sync 1", "sync 2"):
            async with http.post("/v1/chat/completions", json=chat_body(text), headers=OPENAI_AUTH) as r:
                statuses.append(r.status)
    assert statuses == [200, 429]
    assert emu.stats().total.batch_billed == 5


@pytest.mark.anyio
async def test_openai_batch_endpoints_want_the_key_and_a_known_id() -> None:
    async with batch_emulator() as (emu, _clock, http):
        async with http.get("/v1/batches") as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_api_key"
        async with http.get("/v1/batches/batch_nope", headers=OPENAI_AUTH) as response:
            assert response.status == 404
        async with http.get("/v1/files/file-nope/content", headers=OPENAI_AUTH) as response:
            assert response.status == 404
    assert emu.stats().unauthorized == 1


# --- Anthropic -------------------------------------------------------------------------------------

ANTHROPIC_AUTH = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def anthropic_request(custom_id: str, text: str, model: str = "claude-m") -> dict[str, object]:
    params = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "params": params}


async def anthropic_create(http: aiohttp.ClientSession, requests: list[dict], status: int = 200) -> dict:
    async with http.post("/v1/messages/batches", json={"requests": requests}, headers=ANTHROPIC_AUTH) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def anthropic_get(http: aiohttp.ClientSession, path: str) -> dict:
    async with http.get(path, headers=ANTHROPIC_AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def anthropic_results(http: aiohttp.ClientSession, batch: dict) -> list[dict]:
    assert batch["results_url"].startswith("http://127.0.0.1:")
    async with http.get(batch["results_url"], headers=ANTHROPIC_AUTH) as response:
        assert response.status == 200
        return [json.loads(line) for line in (await response.text()).splitlines()]


@pytest.mark.anyio
async def test_anthropic_batch_ends_on_the_clock_and_its_results_are_billed_once_at_batch_price() -> None:
    async with batch_emulator(delay_s=3.0) as (emu, clock, http):
        batch = await anthropic_create(http, [anthropic_request(f"req-{i}", f"question {i}") for i in range(3)])
        assert batch["type"] == "message_batch" and batch["processing_status"] == "in_progress"
        assert batch["results_url"] is None and batch["expires_at"] > batch["created_at"]
        clock.now += 2.0
        batch = await anthropic_get(http, f"/v1/messages/batches/{batch['id']}")
        # Counts leave `processing` only once the whole batch has ended, as Anthropic documents.
        assert batch["processing_status"] == "in_progress" and batch["request_counts"]["processing"] == 3
        async with http.get(f"/v1/messages/batches/{batch['id']}/results", headers=ANTHROPIC_AUTH) as response:
            assert response.status == 400  # not ended: no results yet
        clock.now += 1.0
        batch = await anthropic_get(http, f"/v1/messages/batches/{batch['id']}")
        assert batch["processing_status"] == "ended" and batch["ended_at"] is not None
        counts = batch["request_counts"]
        assert counts == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
        results = await anthropic_results(http, batch)
    assert sorted(r["custom_id"] for r in results) == ["req-0", "req-1", "req-2"]
    for result in results:
        message = result["result"]["message"]
        assert result["result"]["type"] == "succeeded" and message["type"] == "message"
        assert message["content"][0]["text"] == "Echo: question " + result["custom_id"][-1]
        assert message["usage"]["input_tokens"] > 0
    stats = emu.stats().models["claude-m"]
    assert stats.batch_billed == stats.billed_requests == 3 and stats.received == 0
    assert stats.batch_input_tokens == stats.billed_input_tokens
    assert stats.batch_ids == {"req-0": 1, "req-1": 1, "req-2": 1}
    assert sorted(stats.billed_keys.values()) == [1, 1, 1]


@pytest.mark.anyio
async def test_anthropic_errors_expiry_and_a_bad_request_come_back_per_request() -> None:
    async with batch_emulator(delay_s=4.0, expire_after_s=3.0, error_share=0.5) as (emu, clock, http):
        requests = [anthropic_request(f"r{i}", f"q{i}") for i in range(6)]
        requests.append({"custom_id": "bad", "params": {"model": "claude-m", "messages": []}})  # no max_tokens
        batch = await anthropic_create(http, requests)
        clock.now += 3.0
        batch = await anthropic_get(http, f"/v1/messages/batches/{batch['id']}")
        assert batch["processing_status"] == "ended"
        results = {r["custom_id"]: r["result"] for r in await anthropic_results(http, batch)}
    kinds = {custom_id: result["type"] for custom_id, result in results.items()}
    assert kinds["bad"] == "expired"  # the last request: it was never reached
    finished = [kinds[f"r{i}"] for i in range(5)]  # 7 requests over 4 s, expired at 3 s: 5 finished
    assert kinds["r5"] == "expired" and set(finished) == {"succeeded", "errored"}
    errored = next(result for result in results.values() if result["type"] == "errored")
    assert errored["error"]["type"] == "error" and errored["error"]["error"]["type"] == "api_error"
    counts = batch["request_counts"]
    assert counts["expired"] == 2 and counts["succeeded"] + counts["errored"] == 5
    stats = emu.stats().total
    assert stats.batch_billed == counts["succeeded"] and stats.batch_errored == counts["errored"]
    assert stats.batch_expired == 1  # the bad request never parsed, so no model to count it under


@pytest.mark.anyio
async def test_anthropic_an_invalid_request_in_a_batch_comes_back_errored() -> None:
    async with batch_emulator(delay_s=1.0) as (emu, clock, http):
        bad = {"custom_id": "bad", "params": {"model": "claude-m", "messages": []}}
        batch = await anthropic_create(http, [anthropic_request("ok", "q"), bad])
        clock.now += 1.0
        batch = await anthropic_get(http, f"/v1/messages/batches/{batch['id']}")
        results = {r["custom_id"]: r["result"] for r in await anthropic_results(http, batch)}
    assert results["ok"]["type"] == "succeeded"
    assert results["bad"]["type"] == "errored"
    assert results["bad"]["error"]["error"]["type"] == "invalid_request_error"
    assert emu.stats().total.billed_requests == 1


@pytest.mark.anyio
async def test_anthropic_cancel_goes_through_canceling_and_bills_only_what_finished() -> None:
    async with batch_emulator(delay_s=4.0, cancel_s=1.0) as (emu, clock, http):
        batch = await anthropic_create(http, [anthropic_request(f"r{i}", f"q{i}") for i in range(4)])
        clock.now += 2.0
        async with http.post(f"/v1/messages/batches/{batch['id']}/cancel", headers=ANTHROPIC_AUTH) as response:
            assert response.status == 200
            cancelling = await response.json()
        assert cancelling["processing_status"] == "canceling" and cancelling["cancel_initiated_at"] is not None
        clock.now += 1.0
        batch = await anthropic_get(http, f"/v1/messages/batches/{batch['id']}")
        assert batch["processing_status"] == "ended"
        assert batch["request_counts"]["canceled"] == 2 and batch["request_counts"]["succeeded"] == 2
        results = {r["custom_id"]: r["result"]["type"] for r in await anthropic_results(http, batch)}
    assert results == {"r0": "succeeded", "r1": "succeeded", "r2": "canceled", "r3": "canceled"}
    assert emu.stats().total.batch_billed == 2


@pytest.mark.anyio
async def test_anthropic_list_pages_newest_first() -> None:
    async with batch_emulator() as (_emu, _clock, http):
        ids = [(await anthropic_create(http, [anthropic_request("a", f"q{i}")]))["id"] for i in range(3)]
        first = await anthropic_get(http, "/v1/messages/batches?limit=2")
        rest = await anthropic_get(http, f"/v1/messages/batches?limit=2&after_id={first['last_id']}")
        back = await anthropic_get(http, f"/v1/messages/batches?limit=2&before_id={ids[0]}")
    assert [b["id"] for b in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert [b["id"] for b in back["data"]] == [ids[2], ids[1]]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("requests", "behaviour", "status", "error_type"),
    [
        ([anthropic_request(f"r{i}", "q") for i in range(3)], {"max_requests": 2}, 400, "invalid_request_error"),
        ([anthropic_request("r", "q" * 300)], {"max_bytes": 200}, 413, "request_too_large"),
        ([anthropic_request("a", "q"), anthropic_request("a", "q2")], {}, 400, "invalid_request_error"),
        ([anthropic_request("not a valid id!", "q")], {}, 400, "invalid_request_error"),
        ([{"custom_id": "a"}], {}, 400, "invalid_request_error"),
        ([], {}, 400, "invalid_request_error"),
    ],
)
async def test_anthropic_refuses_a_batch_over_its_limits_or_malformed(
    requests: list[dict], behaviour: dict, status: int, error_type: str
) -> None:
    async with batch_emulator(**behaviour) as (emu, _clock, http):
        document = await anthropic_create(http, requests, status=status)
    assert document["type"] == "error" and document["error"]["type"] == error_type
    assert emu.stats().batches_created == 0 and emu.stats().batches_refused == 1


@pytest.mark.anyio
async def test_anthropic_batches_in_flight_over_the_cap_get_a_429() -> None:
    async with batch_emulator(max_in_flight=1, delay_s=2.0) as (emu, clock, http):
        await anthropic_create(http, [anthropic_request("a", "q")])
        refused = await anthropic_create(http, [anthropic_request("a", "q")], status=429)
        clock.now += 2.0
        await anthropic_create(http, [anthropic_request("a", "q")])
    assert refused["error"]["type"] == "rate_limit_error"
    assert emu.stats().batches_created == 2 and emu.stats().batches_refused == 1


@pytest.mark.anyio
async def test_anthropic_batch_endpoints_want_the_key() -> None:
    async with batch_emulator() as (emu, _clock, http):
        async with http.get("/v1/messages/batches") as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_error"
        async with http.get("/v1/messages/batches/msgbatch_nope", headers=ANTHROPIC_AUTH) as response:
            assert response.status == 404
    assert emu.stats().unauthorized == 1


# --- Gemini ----------------------------------------------------------------------------------------

GEMINI_AUTH = {"x-goog-api-key": KEY}


def gemini_request(key: str | None, text: str) -> dict[str, object]:
    request = {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 64}}
    return {"request": request, "metadata": {"key": key}} if key is not None else {"request": request}


async def gemini_create(
    http: aiohttp.ClientSession, requests: list[dict], name: str = "run", status: int = 200, model: str = "gem-m"
) -> dict:
    body = {"batch": {"displayName": name, "inputConfig": {"requests": {"requests": requests}}}}
    async with http.post(f"/v1beta/models/{model}:batchGenerateContent", json=body, headers=GEMINI_AUTH) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def gemini_get(http: aiohttp.ClientSession, path: str) -> dict:
    async with http.get(path, headers=GEMINI_AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.mark.anyio
async def test_gemini_batch_is_an_operation_that_ends_with_inline_responses_billed_once_at_batch_price() -> None:
    async with batch_emulator(validate_s=1.0, delay_s=2.0) as (emu, clock, http):
        operation = await gemini_create(http, [gemini_request(f"k{i}", f"question {i}") for i in range(2)], name="r1")
        assert operation["name"].startswith("batches/") and "done" not in operation
        batch = operation["metadata"]
        assert batch["state"] == "BATCH_STATE_PENDING" and batch["displayName"] == "r1"
        assert batch["model"] == "models/gem-m" and batch["batchStats"]["requestCount"] == "2"
        clock.now += 2.0
        operation = await gemini_get(http, f"/v1beta/{operation['name']}")
        assert operation["metadata"]["state"] == "BATCH_STATE_RUNNING"
        assert operation["metadata"]["batchStats"]["successfulRequestCount"] == "1"
        clock.now += 1.0
        operation = await gemini_get(http, f"/v1beta/{operation['name']}")
    assert operation["done"] is True and operation["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    responses = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert responses == operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert [r["metadata"]["key"] for r in responses] == ["k0", "k1"]  # in request order
    for i, entry in enumerate(responses):
        assert entry["response"]["candidates"][0]["content"]["parts"][0]["text"] == f"Echo: question {i}"
        assert entry["response"]["usageMetadata"]["promptTokenCount"] > 0
    stats = emu.stats().models["gem-m"]
    assert stats.batch_billed == stats.billed_requests == 2 and stats.received == 0
    assert stats.batch_output_tokens == stats.billed_output_tokens > 0
    assert stats.batch_ids == {"k0": 1, "k1": 1} and sorted(stats.billed_keys.values()) == [1, 1]


@pytest.mark.anyio
async def test_gemini_errors_and_expiry_come_back_as_statuses_per_request() -> None:
    async with batch_emulator(delay_s=4.0, expire_after_s=3.0, error_share=1.0) as (emu, clock, http):
        operation = await gemini_create(http, [gemini_request(f"k{i}", f"q{i}") for i in range(4)])
        clock.now += 3.0
        operation = await gemini_get(http, f"/v1beta/{operation['name']}")
    assert operation["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    errors = [entry["error"] for entry in operation["response"]["inlinedResponses"]["inlinedResponses"]]
    assert [e["code"] for e in errors] == [13, 13, 13, 4]  # INTERNAL x3, then DEADLINE_EXCEEDED
    stats = emu.stats().total
    assert stats.billed_requests == 0 and stats.batch_errored == 3 and stats.batch_expired == 1


@pytest.mark.anyio
async def test_gemini_cancel_and_list_by_display_name() -> None:
    async with batch_emulator(delay_s=4.0) as (emu, clock, http):
        first = await gemini_create(http, [gemini_request(None, f"q{i}") for i in range(4)], name="first")
        second = await gemini_create(http, [gemini_request("a", "q")], name="second")
        clock.now += 2.0
        async with http.post(f"/v1beta/{first['name']}:cancel", headers=GEMINI_AUTH) as response:
            assert response.status == 200 and await response.json() == {}
        operation = await gemini_get(http, f"/v1beta/{first['name']}")
        page = await gemini_get(http, "/v1beta/batches?pageSize=1")
        rest = await gemini_get(http, f"/v1beta/batches?pageSize=1&pageToken={page['nextPageToken']}")
        async with http.post(f"/v1beta/{first['name']}:cancel", headers=GEMINI_AUTH) as response:
            assert response.status == 400  # already ended
    assert operation["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    entries = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert ["response" in e for e in entries] == [True, True, False, False]
    assert all("metadata" not in e for e in entries)  # sent without keys: nothing to echo
    assert [op["name"] for op in page["operations"]] == [second["name"]] and "nextPageToken" not in rest
    found = [op["name"] for op in page["operations"] + rest["operations"] if op["metadata"]["displayName"] == "first"]
    assert found == [first["name"]]
    assert emu.stats().total.batch_cancelled == 2 and emu.stats().total.batch_billed == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("requests", "behaviour", "status"),
    [
        ([gemini_request("a", "q" * 300)], {"max_bytes": 200}, 400),
        ([gemini_request(f"k{i}", "q") for i in range(3)], {"max_requests": 2}, 400),
        ([], {}, 400),
        ([{"metadata": {"key": "a"}}], {}, 400),
    ],
)
async def test_gemini_refuses_a_batch_over_its_limits_or_malformed(
    requests: list[dict], behaviour: dict, status: int
) -> None:
    async with batch_emulator(**behaviour) as (emu, _clock, http):
        document = await gemini_create(http, requests, status=status)
    assert document["error"]["status"] == "INVALID_ARGUMENT"
    assert emu.stats().batches_created == 0 and emu.stats().batches_refused == 1


@pytest.mark.anyio
async def test_gemini_batches_in_flight_over_the_cap_get_resource_exhausted() -> None:
    async with batch_emulator(max_in_flight=1, delay_s=2.0) as (emu, clock, http):
        await gemini_create(http, [gemini_request("a", "q")])
        refused = await gemini_create(http, [gemini_request("a", "q")], status=429)
        clock.now += 2.0
        await gemini_create(http, [gemini_request("a", "q")])
    assert refused["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert emu.stats().batches_created == 2 and emu.stats().batches_refused == 1


@pytest.mark.anyio
async def test_gemini_batch_endpoints_want_the_key() -> None:
    async with batch_emulator() as (emu, _clock, http):
        async with http.post("/v1beta/models/gem-m:batchGenerateContent", json={}) as response:
            assert response.status == 401
        async with http.get("/v1beta/batches/nope", headers=GEMINI_AUTH) as response:
            assert response.status == 404
    assert emu.stats().unauthorized == 1


# --- the official SDKs read the emulated batches ---------------------------------------------------


@pytest.mark.anyio
async def test_the_openai_sdk_runs_a_batch_from_upload_to_output_file() -> None:
    openai = pytest.importorskip("openai")
    async with batch_emulator(delay_s=1.0) as (_emu, clock, _http):
        emu = _emu
        async with openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url("openai"), max_retries=0) as client:
            upload = await client.files.create(file=("in.jsonl", openai_line("a", "hello") + b"\n"), purpose="batch")
            batch = await client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
            )
            clock.now += 1.0
            batch = await client.batches.retrieve(batch.id)
            listed = [b.id async for b in client.batches.list(limit=5)]
            assert batch.output_file_id is not None
            output = (await client.files.content(batch.output_file_id)).text
    assert batch.status == "completed" and batch.request_counts is not None and batch.request_counts.completed == 1
    assert batch.metadata == {"k": "v"} and listed == [batch.id]
    assert json.loads(output)["response"]["body"]["choices"][0]["message"]["content"] == "Echo: hello"


@pytest.mark.anyio
async def test_the_anthropic_sdk_runs_a_message_batch_to_its_results() -> None:
    anthropic = pytest.importorskip("anthropic")
    async with batch_emulator(delay_s=1.0) as (emu, clock, _http):
        async with anthropic.AsyncAnthropic(api_key=KEY, base_url=emu.url, max_retries=0) as client:
            batch = await client.messages.batches.create(requests=[anthropic_request("a", "hello")])  # type: ignore[list-item]
            clock.now += 1.0
            batch = await client.messages.batches.retrieve(batch.id)
            results = [result async for result in await client.messages.batches.results(batch.id)]
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 1
    assert results[0].custom_id == "a" and results[0].result.type == "succeeded"
    assert results[0].result.message.content[0].text == "Echo: hello"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_google_genai_sdk_runs_an_inline_batch_to_its_responses() -> None:
    genai = pytest.importorskip("google.genai")
    types = genai.types
    async with batch_emulator(delay_s=1.0) as (emu, clock, _http):
        options = types.HttpOptions(base_url=emu.url, retry_options=types.HttpRetryOptions(attempts=1))
        client = genai.Client(api_key=KEY, http_options=options)
        inline = [{"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "metadata": {"key": "a"}}]
        job = await client.aio.batches.create(model="gem-m", src=inline, config={"display_name": "run-1"})
        clock.now += 1.0
        assert job.name is not None
        job = await client.aio.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.display_name == "run-1"
    assert job.dest is not None and job.dest.inlined_responses is not None
    response = job.dest.inlined_responses[0]
    assert response.metadata == {"key": "a"} and response.response is not None
    assert response.response.text == "Echo: hello"
