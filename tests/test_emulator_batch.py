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
