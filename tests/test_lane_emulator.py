"""The lane end to end against the provider emulator: faults, and limits configured wrong."""

from __future__ import annotations

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from adapters.client import ChatClient
from core.calls import ChatRequest, ChatResult, Message
from emulator import EmulatorSpec, Faults, Latency, ModelLimits, run_emulator
from engine.lane import CallOutcome, Lane, LaneLimits


def requests(n: int, model: str = "m") -> list[ChatRequest]:
    return [
        ChatRequest(model=model, messages=(Message("user", f"question {i}: what is {i} + {i}?"),), max_tokens=64)
        for i in range(n)
    ]


async def drive(lane: Lane, batch: list[ChatRequest], workers: int) -> list[CallOutcome]:
    """Every request through the lane by `workers` tasks pulling from a bounded stream."""
    outcomes: list[CallOutcome] = []
    send, recv = anyio.create_memory_object_stream[ChatRequest](max_buffer_size=workers)

    async def work(stream: MemoryObjectReceiveStream[ChatRequest]) -> None:
        async with stream:
            async for request in stream:
                outcomes.append(await lane.call(request))

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(work, recv.clone())
        recv.close()
        async with send:
            for request in batch:
                await send.send(request)
    return outcomes


@pytest.mark.anyio
async def test_faults_end_every_call_completed_or_failed_never_lost_or_duplicated() -> None:
    spec = EmulatorSpec(
        latency=Latency(median_ms=5),
        faults=Faults(error_rate=0.05, reset_rate=0.02, hang_rate=0.01, hang_s=30, malformed_rate=0.02),
        seed=3,
    )
    batch = requests(200)
    limits = LaneLimits(max_in_flight=16, timeout_s=0.3, max_attempts=4, backoff_base_s=0.01, backoff_cap_s=0.05)
    async with run_emulator(spec) as emu:
        async with ChatClient("openai", api_key="k", base_url=emu.base_url("openai")) as client:
            lane = Lane("emu", client, limits)
            with anyio.fail_after(60):
                outcomes = await drive(lane, batch, workers=16)
        stats = emu.stats()
    assert len(outcomes) == len(batch)
    completed = [o for o in outcomes if o.status == "completed"]
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(completed) + len(failed) == len(batch)
    assert all(o.error and "\n" not in o.error for o in failed)
    assert lane.stats.retries > 0 and stats.total.faults > 0  # the faults really happened
    # The provider's own count: every completed call answered once, none twice.
    assert stats.total.duplicates == 0
    assert len(stats.models["m"].completed_keys) == len(completed)
    assert (lane.stats.completed, lane.stats.failed, lane.stats.in_flight) == (len(completed), len(failed), 0)
    assert all(o.result is not None and o.result.text for o in completed)


class HideRateHeaders:
    """A provider that sends no rate-limit headers (Gemini): only 429s tell the real limit."""

    def __init__(self, client: ChatClient):
        self.client = client

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        result = await self.client.complete(request, timeout_s=timeout_s)
        result.rate_limit = None
        return result


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [True, False], ids=["with-rate-headers", "429s-only"])
async def test_rpm_configured_twice_too_high_converges_without_a_storm(headers: bool) -> None:
    spec = EmulatorSpec(models={"m": ModelLimits(rpm=1200)}, latency=Latency(median_ms=20, sigma=0.3))
    batch = requests(120)
    async with run_emulator(spec) as emu:
        async with ChatClient("openai", api_key="k", base_url=emu.base_url("openai")) as client:
            lane = Lane("emu", client if headers else HideRateHeaders(client), LaneLimits(rpm=2400, max_in_flight=32))
            with anyio.fail_after(60):
                outcomes = await drive(lane, batch, workers=32)
        stats = emu.stats()
    assert all(o.status == "completed" for o in outcomes) and len(outcomes) == len(batch)
    assert stats.total.rejected_429 == lane.stats.http_429
    assert lane.stats.http_429 <= 0.15 * len(batch)
    assert lane.stats.rpm is not None and lane.stats.rpm < 2400
    if headers:
        assert lane.stats.rpm == 1200  # the header told it the real limit


@pytest.mark.anyio
async def test_groqs_requests_per_day_header_is_not_adopted_as_rpm() -> None:
    limits = ModelLimits(rpd=14_400, tpm=600_000, header_dialect="groq")
    async with run_emulator(EmulatorSpec(models={"m": limits})) as emu:
        async with ChatClient("openai", api_key="k", base_url=emu.base_url("openai")) as client:
            lane = Lane("groq", client, LaneLimits())
            outcomes = await drive(lane, requests(20), workers=4)
    assert all(o.status == "completed" for o in outcomes)
    # Read as RPM, 14,400 a day would be 240 requests a second; the TPM header is per minute.
    assert lane.stats.rpm is None and lane.stats.tpm == 600_000


@pytest.mark.anyio
async def test_anthropics_input_and_output_limits_make_the_lanes_tpm() -> None:
    limits = ModelLimits(rpm=6_000, itpm=400_000, otpm=80_000)
    async with run_emulator(EmulatorSpec(models={"m": limits})) as emu:
        async with ChatClient("anthropic", api_key="k", base_url=emu.base_url("anthropic")) as client:
            lane = Lane("claude", client, LaneLimits(rpm=6_000))
            outcomes = await drive(lane, requests(10), workers=2)
    assert all(o.status == "completed" for o in outcomes)
    assert lane.stats.tpm == 480_000
