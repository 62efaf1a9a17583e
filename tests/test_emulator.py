"""The provider emulator: exact limits, wire formats, answers, faults and stats."""

from __future__ import annotations

import json
import urllib.request

import aiohttp
import anyio
import msgspec
import pytest

from adapters import ChatClient
from core.calls import ChatRequest, Message
from core.errors import ConfigError, Retryable, Unusable
from emulator import (
    AnswerRequest,
    EmulatorSpec,
    EmulatorStats,
    Faults,
    Latency,
    ModelLimits,
    count_tokens,
    run_emulator,
    start_emulator_process,
)
from emulator.limiter import ModelLimiter, go_duration

KEY = "emulator-key"
PROVIDERS = ("openai", "gemini", "anthropic")


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str = "What is 2 + 2?", *, model: str = "m", max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", text),), max_tokens=max_tokens, temperature=0.0)


async def call(emu, provider: str, request: ChatRequest, timeout_s: float = 5.0):
    async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:
        return await client.complete(request, timeout_s=timeout_s)


# --- the limiter, on a fake clock --------------------------------------------------------------


def test_rpm_bucket_admits_exactly_its_burst_then_refills_continuously() -> None:
    clock = FakeClock()
    limiter = ModelLimiter(ModelLimits(rpm=600, burst_s=1.0), clock)
    waits = [limiter.admit(1) for _ in range(30)]
    assert waits[:10] == [0.0] * 10
    assert all(w == pytest.approx(0.1) for w in waits[10:])  # one request per 0.1 s at 600 RPM
    clock.now += 0.05
    assert limiter.admit(1) == pytest.approx(0.05)
    clock.now += 0.05
    assert limiter.admit(1) == 0.0
    assert limiter.admit(1) == pytest.approx(0.1)


def test_tpm_charges_max_tokens_and_refunds_the_unused_part() -> None:
    clock = FakeClock()
    limiter = ModelLimiter(ModelLimits(tpm=6000), clock)  # 100 tokens/s, holds 100
    assert limiter.admit(60) == 0.0
    assert limiter.admit(60) == pytest.approx(0.2)  # 40 left, 20 missing at 100/s
    limiter.refund_tokens(50)  # the first answer used 10 of its 60
    assert limiter.admit(60) == 0.0
    limiter.refund_tokens(10_000)  # never above capacity
    assert limiter.tokens is not None and limiter.tokens.remaining() == 100


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_and_drives_it_negative() -> None:
    clock = FakeClock()
    limiter = ModelLimiter(ModelLimits(tpm=600), clock)  # 10 tokens/s, holds 10
    assert limiter.admit(25) == 0.0
    assert limiter.admit(1) == pytest.approx(1.6)  # level -15: 16 tokens at 10/s
    clock.now += 1.6
    assert limiter.admit(1) == 0.0


def test_rpm_capacity_is_at_least_one_request() -> None:
    limiter = ModelLimiter(ModelLimits(rpm=6), FakeClock())  # 0.1 request/s, burst holds 1
    assert limiter.admit(1) == 0.0
    assert limiter.admit(1) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0, "0ms"), (0.02, "20ms"), (0.9999999, "1s"), (1.5, "1.5s"), (360.0, "6m0s")]
)
def test_reset_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


# --- the limiter behind HTTP -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_burst_of_30_at_600_rpm_gets_exactly_10_through(provider: str) -> None:
    clock = FakeClock()
    spec = EmulatorSpec(models={"m": ModelLimits(rpm=600, burst_s=1.0)})
    async with run_emulator(spec, clock=clock) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider), max_connections=30) as client:
            outcomes: list[object] = []

            async def one(i: int) -> None:
                try:
                    outcomes.append(await client.complete(ask(f"question {i}"), timeout_s=5))
                except Retryable as exc:
                    outcomes.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(one, i)
        stats = emu.stats().models["m"]
    rejected = [o for o in outcomes if isinstance(o, Retryable)]
    assert len(outcomes) - len(rejected) == 10
    assert len(rejected) == 20
    assert all(r.rate_limited and r.after_s == pytest.approx(0.1) for r in rejected)
    assert (stats.received, stats.accepted, stats.rejected_429, stats.completed) == (30, 10, 20, 10)


@pytest.mark.anyio
async def test_429_carries_retry_after_and_rate_limit_headers() -> None:
    clock = FakeClock()
    spec = EmulatorSpec(default_limits=ModelLimits(rpm=60, tpm=60_000))
    async with run_emulator(spec, clock=clock) as emu:
        ok = await call(emu, "openai", ask())
        assert ok.rate_limit is not None and ok.rate_limit.limit_requests == 60
        assert ok.rate_limit.remaining_requests == 0 and ok.rate_limit.reset_requests_s == 1.0
        body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                emu.url + "/v1/chat/completions", data=body, headers={"Authorization": "Bearer k"}
            ) as response,
        ):
            status, headers, payload = response.status, response.headers, await response.json()
    assert status == 429
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "1000")
    assert headers["x-ratelimit-limit-requests"] == "60" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == "60000" and headers["x-ratelimit-reset-tokens"].endswith("ms")
    assert payload["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.anyio
async def test_tpm_refund_lets_the_next_request_in_at_once() -> None:
    clock = FakeClock()
    # Holds 1,000 tokens; each request is charged ~10 input + 900 max_tokens, uses ~12.
    spec = EmulatorSpec(default_limits=ModelLimits(tpm=60_000))
    async with run_emulator(spec, clock=clock) as emu:
        for _ in range(3):
            await call(emu, "anthropic", ask(max_tokens=900))
        with pytest.raises(Retryable) as caught:
            await call(emu, "anthropic", ask(max_tokens=990))  # 10 + 990 > what the three answers left
        stats = emu.stats().total
    assert stats.completed == 3 and stats.rejected_429 == 1
    assert caught.value.rate_limited and caught.value.after_s > 0


# --- wire formats, auth, stats ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "path", "error_field"),
    [
        ("openai", "/v1/chat/completions", ("error", "type")),
        ("gemini", "/v1beta/models/m:generateContent", ("error", "status")),
        ("anthropic", "/v1/messages", ("error", "type")),
    ],
)
async def test_missing_auth_header_is_a_provider_shaped_401(provider: str, path: str, error_field) -> None:
    async with run_emulator(EmulatorSpec()) as emu:
        async with aiohttp.ClientSession() as session, session.post(emu.url + path, data=b"{}") as response:
            status, payload = response.status, await response.json()
        assert emu.stats().unauthorized == 1
    assert status == 401
    outer, inner = error_field
    assert payload[outer][inner] in ("invalid_request_error", "UNAUTHENTICATED", "authentication_error")


@pytest.mark.anyio
async def test_stats_count_tokens_and_duplicates_and_reset_over_http() -> None:
    async with run_emulator(EmulatorSpec()) as emu:
        first = await call(emu, "gemini", ask("same question"))
        await call(emu, "gemini", ask("same question"))
        await call(emu, "gemini", ask("another question"))
        async with aiohttp.ClientSession() as session:
            async with session.get(emu.url + "/_emulator/stats") as response:
                stats = msgspec.json.decode(await response.read(), type=EmulatorStats)
            m = stats.models["m"]
            assert (m.completed, m.duplicates, len(m.completed_keys)) == (3, 1, 2)
            assert sorted(m.completed_keys.values()) == [1, 2]
            assert m.input_tokens == 3 * first.input_tokens - count_tokens("same") + count_tokens("another")
            async with session.post(
                emu.url + "/_emulator/reset", data=msgspec.json.encode(EmulatorSpec(default_limits=ModelLimits(rpm=1)))
            ):
                pass
        assert emu.stats().total.received == 0
        await call(emu, "gemini", ask())
        with pytest.raises(Retryable, match="RESOURCE_EXHAUSTED"):
            await call(emu, "gemini", ask())


@pytest.mark.anyio
async def test_model_comes_from_the_body_or_the_path() -> None:
    async with run_emulator(EmulatorSpec()) as emu:
        await call(emu, "openai", ask(model="gpt-x"))
        await call(emu, "anthropic", ask(model="claude-x"))
        await call(emu, "gemini", ask(model="gemini-x"))
        assert sorted(emu.stats().models) == ["claude-x", "gemini-x", "gpt-x"]


# --- answers -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_answer_sources(tmp_path) -> None:
    canned = tmp_path / "answers.jsonl"
    canned.write_text(
        '{"model": "m2", "match": "capital", "text": "Paris, for m2."}\n{"match": "capital", "text": "Paris."}\n'
    )
    async with run_emulator(EmulatorSpec(answers=str(canned))) as emu:
        assert (await call(emu, "openai", ask("The capital of France?"))).text == "Paris."
        assert (await call(emu, "openai", ask("The capital of France?", model="m2"))).text == "Paris, for m2."
        assert (await call(emu, "openai", ask("Something else"))).text == "Echo: Something else"
        seen: list[AnswerRequest] = []

        def scripted(request: AnswerRequest) -> str:
            seen.append(request)
            return "one two six ten five nine"

        emu.answer_fn = scripted
        result = await call(emu, "anthropic", ask("Hi", max_tokens=4))
    assert (result.text, result.output_tokens, result.finish_reason) == ("one two six ten", 4, "max_tokens")
    assert seen == [
        AnswerRequest(
            provider="anthropic", model="m", messages=[("user", "Hi")], max_tokens=4, temperature=0.0, top_p=1.0
        )
    ]


@pytest.mark.anyio
async def test_answers_by_import_path_and_bad_sources() -> None:
    async with run_emulator(EmulatorSpec(answers="emulator.answers:echo")) as emu:
        assert (await call(emu, "openai", ask("ping"))).text == "Echo: ping"
    with pytest.raises(ConfigError, match="no_such_module"):
        async with run_emulator(EmulatorSpec(answers="no_such_module:fn")):
            pass
    with pytest.raises(ConfigError, match="use 'echo'"):
        async with run_emulator(EmulatorSpec(answers="fancy")):
            pass


def test_tokenizer_is_not_chars_over_four() -> None:
    assert count_tokens("Hello, world!") == 6  # Hell o , worl d !
    assert count_tokens("a b c d e f g h") == 8  # 15 chars
    assert count_tokens("internationalization") == 5  # 20 chars
    assert count_tokens("   ") == 0


# --- latency and faults --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_latency_adds_per_output_token_time() -> None:
    spec = EmulatorSpec(latency=Latency(median_ms=30, ms_per_output_token=2), output_tokens=50)
    async with run_emulator(spec) as emu:
        result = await call(emu, "openai", ask())
    assert result.latency_s >= 0.13


@pytest.mark.anyio
async def test_fault_rates_are_seeded_and_counted() -> None:
    spec = EmulatorSpec(faults=Faults(error_rate=0.3, empty_rate=0.2), seed=7)
    counts = []
    for _ in range(2):
        async with run_emulator(spec) as emu:
            async with ChatClient("openai", api_key=KEY, base_url=emu.base_url("openai")) as client:
                failures = 0
                for i in range(100):
                    try:
                        await client.complete(ask(f"q{i}"), timeout_s=5)
                    except (Retryable, Unusable):
                        failures += 1
            stats = emu.stats().total
            assert stats.faults == failures and stats.completed == 100 - failures
            counts.append(failures)
    assert counts[0] == counts[1] and 30 <= counts[0] <= 70


def test_emulator_in_a_child_process() -> None:
    spec = EmulatorSpec(default_limits=ModelLimits(rpm=60))
    with start_emulator_process(spec) as url:
        request = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["choices"][0]["message"]["content"] == "Echo: hi"
            assert response.headers["x-ratelimit-limit-requests"] == "60"
        with urllib.request.urlopen(url + "/_emulator/stats", timeout=10) as response:
            assert json.load(response)["total"]["completed"] == 1


def test_the_emulator_child_gets_this_copy_on_its_path() -> None:
    # The child runs `python -m emulator` from the caller's directory: the path we add must hold the package.
    from emulator import process

    assert (process._REPO_ROOT / "emulator" / "__main__.py").is_file()
