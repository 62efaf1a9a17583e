"""The emulator misbehaves like the real providers: quotas, overloads, billed failures, abandoned calls,
TPM without refund, ITPM/OTPM and Groq's headers. Raw aiohttp, so the wire itself is what is checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest

from emulator import (
    Billing,
    Emulator,
    EmulatorSpec,
    EmulatorStats,
    Faults,
    Latency,
    ModelLimits,
    ModelStats,
    Overload,
    count_prompt_tokens,
    count_tokens,
    run_emulator,
)

PROVIDERS = ("openai", "gemini", "anthropic")
QUESTION = "What is 2 + 2?"
PROMPT_TOKENS = count_prompt_tokens([("user", QUESTION)])


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reply(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def request_of(provider: str, text: str, max_tokens: int, model: str) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of one request in `provider`'s wire format, as its SDK sends it."""
    if provider == "openai":
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
        return "/v1/chat/completions", {"Authorization": "Bearer k"}, msgspec.json.encode(body)
    if provider == "anthropic":
        body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
        return "/v1/messages", {"x-api-key": "k"}, msgspec.json.encode(body)
    body = {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"maxOutputTokens": max_tokens},
    }
    return f"/v1beta/models/{model}:generateContent", {"x-goog-api-key": "k"}, msgspec.json.encode(body)


async def post(
    emu, provider: str, text: str = QUESTION, *, max_tokens: int = 64, model: str = "m", timeout_s: float = 5.0
) -> Reply:
    path, headers, body = request_of(provider, text, max_tokens, model)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async with session.post(emu.url + path, data=body, headers=headers) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return Reply(response.status, headers, await response.read())


async def until(emu: Emulator, condition: Callable[[EmulatorStats], bool]) -> None:
    """Wait (at most 5 s) for the emulator to notice something the client did, e.g. leaving."""
    with anyio.fail_after(5):
        await emu.wait_for(condition)


def billed(stats: ModelStats) -> tuple[int, int, int]:
    return stats.billed_requests, stats.billed_input_tokens, stats.billed_output_tokens


# --- out of quota ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_after_quota_requests_every_request_gets_the_providers_out_of_quota_answer(provider: str) -> None:
    async with run_emulator(EmulatorSpec(models={"m": ModelLimits(quota_requests=2)})) as emu:
        replies = [await post(emu, provider, f"q{i}") for i in range(5)]
        other = await post(emu, provider, model="other")  # the quota is per model
        stats = emu.stats().models["m"]
    assert [r.status for r in replies[:2]] == [200, 200] and other.status == 200
    refused = replies[2:]
    error = refused[0].json()["error"]
    if provider == "openai":
        # https://platform.openai.com/docs/guides/error-codes/api-errors
        assert {r.status for r in refused} == {429}
        assert error["type"] == error["code"] == "insufficient_quota"
        assert "retry-after" not in refused[0].headers
    elif provider == "gemini":
        assert {r.status for r in refused} == {429} and error["status"] == "RESOURCE_EXHAUSTED"
        [failure] = [d for d in error["details"] if d["@type"].endswith("google.rpc.QuotaFailure")]
        quota_id = failure["violations"][0]["quotaId"]
        assert "PerDay" in quota_id and failure["violations"][0]["quotaDimensions"]["model"] == "m"
    else:
        assert {r.status for r in refused} == {400} and refused[0].json()["type"] == "error"
        assert error["type"] == "invalid_request_error" and "credit balance is too low" in error["message"]
    assert (stats.billed_requests, stats.quota_refused, stats.accepted) == (2, 3, 2)


@pytest.mark.anyio
async def test_unbilled_answers_do_not_spend_the_quota_and_billed_ones_do() -> None:
    for unusable, expected in ((False, [200] * 4), (True, [200, 200, 429, 429])):
        spec = EmulatorSpec(
            models={"m": ModelLimits(quota_requests=2)},
            faults=Faults(filtered_rate=1.0),
            billing=Billing(unusable=unusable),
        )
        async with run_emulator(spec) as emu:
            assert [(await post(emu, "openai", f"q{i}")).status for i in range(4)] == expected


# --- overload bursts -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "status", "marker"),
    [
        ("openai", 503, ("type", "server_error")),
        ("gemini", 503, ("status", "UNAVAILABLE")),
        ("anthropic", 529, ("type", "overloaded_error")),
    ],
)
async def test_an_overload_window_answers_the_providers_overload_error(provider, status, marker) -> None:
    clock = FakeClock()
    spec = EmulatorSpec(overloads=[Overload(start_s=10, duration_s=30)])
    async with run_emulator(spec, clock=clock) as emu:
        before = await post(emu, provider, "before")
        clock.now += 10
        during = [await post(emu, provider, f"during {i}") for i in range(3)]
        clock.now += 29.9
        last = await post(emu, provider, "last")
        clock.now += 0.1
        after = await post(emu, provider, "after")
        stats = emu.stats().models["m"]
    assert (before.status, after.status) == (200, 200)
    assert {r.status for r in (*during, last)} == {status}
    key, value = marker
    assert during[0].json()["error"][key] == value and "overloaded" in during[0].json()["error"]["message"].lower()
    assert (stats.overloaded, stats.accepted, stats.billed_requests) == (4, 2, 2)


@pytest.mark.anyio
async def test_a_partial_overload_refuses_its_share_and_a_reset_restarts_the_schedule() -> None:
    clock = FakeClock()
    spec = EmulatorSpec(overloads=[Overload(start_s=0, duration_s=60, rate=0.5)], seed=3)
    async with run_emulator(spec, clock=clock) as emu:
        statuses = [(await post(emu, "openai", f"q{i}")).status for i in range(200)]
        assert 60 <= statuses.count(503) <= 140 and statuses.count(200) == 200 - statuses.count(503)
        clock.now += 60
        assert (await post(emu, "openai")).status == 200
        emu.reset_stats()  # the window is counted from the reset again
        assert (await post(emu, "openai")).status in (200, 503)
        assert emu.stats().total.received == 1


# --- answers without usable text, billed or not ----------------------------------------------------


def usable_text(provider: str, document: dict) -> str:
    if provider == "openai":
        return document["choices"][0]["message"]["content"] or ""
    if provider == "anthropic":
        return "".join(b.get("text", "") for b in document["content"] if b["type"] == "text")
    content = document["candidates"][0].get("content") or {}
    return "".join(p.get("text", "") for p in content.get("parts", []))


def finish_of(provider: str, document: dict) -> str:
    if provider == "openai":
        return document["choices"][0]["finish_reason"]
    if provider == "anthropic":
        return document["stop_reason"]
    return document["candidates"][0]["finishReason"]


FINISHES = {
    # https://platform.openai.com/docs/api-reference/chat/object (finish_reason)
    "openai": {"filtered": "content_filter", "refusal": "stop", "truncated": "length", "empty": "stop"},
    # https://ai.google.dev/api/generate-content#FinishReason
    "gemini": {"filtered": "SAFETY", "refusal": "SAFETY", "truncated": "MAX_TOKENS", "empty": "STOP"},
    # https://docs.anthropic.com/en/api/messages (stop_reason); no content filter, a refusal instead
    "anthropic": {"filtered": "refusal", "refusal": "refusal", "truncated": "max_tokens", "empty": "end_turn"},
}


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["filtered", "refusal", "truncated", "empty"])
async def test_answers_without_text_have_the_providers_finish_reason_and_are_billed_when_asked(
    provider: str, fault: str
) -> None:
    for unusable in (False, True):
        spec = EmulatorSpec(
            faults=Faults(**{f"{fault}_rate": 1.0}), billing=Billing(unusable=unusable), output_tokens=20
        )
        async with run_emulator(spec) as emu:
            reply = await post(emu, provider, max_tokens=48)
            stats = emu.stats().models["m"]
        document = reply.json()
        assert reply.status == 200 and usable_text(provider, document) == ""
        assert finish_of(provider, document) == FINISHES[provider][fault]
        assert (stats.completed, stats.faults) == (0, 1)
        output = {
            "filtered": 20,
            "refusal": count_tokens("I'm sorry, but I can't help with that request."),
            "truncated": 48,
            "empty": 0,
        }[fault]
        assert billed(stats) == ((1, PROMPT_TOKENS, output) if unusable else (0, 0, 0))
    if provider == "openai" and fault == "refusal":
        assert document["choices"][0]["message"]["content"] is None
        assert document["choices"][0]["message"]["refusal"]
    if fault == "truncated":  # the reasoning tokens are the output billed
        if provider == "openai":
            assert document["usage"]["completion_tokens_details"]["reasoning_tokens"] == 48
        elif provider == "gemini":
            assert document["usageMetadata"]["thoughtsTokenCount"] == 48
            assert "candidatesTokenCount" not in document["usageMetadata"]
        else:
            assert [b["type"] for b in document["content"]] == ["thinking"]
            assert document["usage"]["output_tokens"] == 48


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_200_with_an_error_object_is_not_billed_and_an_answer_without_usage_is(provider: str) -> None:
    async with run_emulator(EmulatorSpec(faults=Faults(error_200_rate=1.0), billing=Billing(unusable=True))) as emu:
        reply = await post(emu, provider)
        stats = emu.stats().models["m"]
    assert reply.status == 200 and "error" in reply.json() and billed(stats) == (0, 0, 0)
    async with run_emulator(EmulatorSpec(faults=Faults(no_usage_rate=1.0))) as emu:
        reply = await post(emu, provider)
        stats = emu.stats().models["m"]
    document = reply.json()
    assert reply.status == 200 and usable_text(provider, document) == f"Echo: {QUESTION}"
    assert not {"usage", "usageMetadata"} & document.keys()
    assert stats.completed == 1 and billed(stats) == (1, PROMPT_TOKENS, count_tokens(f"Echo: {QUESTION}"))


@pytest.mark.anyio
async def test_a_malformed_body_is_billed_only_as_an_unusable_answer() -> None:
    for unusable in (False, True):
        spec = EmulatorSpec(faults=Faults(malformed_rate=1.0), billing=Billing(unusable=unusable))
        async with run_emulator(spec) as emu:
            reply = await post(emu, "anthropic")
            stats = emu.stats().models["m"]
        with pytest.raises(msgspec.DecodeError):
            reply.json()
        assert stats.billed_requests == int(unusable)


# --- abandoned requests -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("abandoned", [False, True])
async def test_a_client_that_times_out_on_a_hang_is_billed_the_answer_it_would_have_had(abandoned: bool) -> None:
    spec = EmulatorSpec(faults=Faults(hang_rate=1.0, hang_s=60), billing=Billing(abandoned=abandoned), output_tokens=30)
    async with run_emulator(spec) as emu:
        with pytest.raises(TimeoutError):
            await post(emu, "openai", timeout_s=0.2)
        await until(emu, lambda s: s.total.abandoned == 1)
        stats = emu.stats().models["m"]
    assert stats.completed == 0 and stats.abandoned_billed == int(abandoned)
    assert billed(stats) == ((1, PROMPT_TOKENS, 30) if abandoned else (0, 0, 0))


@pytest.mark.anyio
async def test_a_client_that_gives_up_during_a_slow_answer_is_billed_and_its_tpm_comes_back() -> None:
    clock = FakeClock()
    spec = EmulatorSpec(
        models={"m": ModelLimits(tpm=6000)},
        latency=Latency(median_ms=60_000),
        billing=Billing(abandoned=True),
        output_tokens=10,
    )
    async with run_emulator(spec, clock=clock) as emu:
        with pytest.raises(TimeoutError):
            await post(emu, "gemini", max_tokens=80, timeout_s=0.2)
        await until(emu, lambda s: s.total.abandoned == 1)
        stats = emu.stats().models["m"]
        # The model ran to its end: only prompt + the 10 tokens it wrote stay charged.
        tokens = emu._limiters["m"].tokens
        assert tokens.remaining() == 100 - PROMPT_TOKENS - 10
    assert billed(stats) == (1, PROMPT_TOKENS, 10) and stats.abandoned_billed == 1


@pytest.mark.anyio
async def test_a_reset_is_the_servers_doing_and_never_billed() -> None:
    spec = EmulatorSpec(faults=Faults(reset_rate=1.0), billing=Billing(abandoned=True, unusable=True))
    async with run_emulator(spec) as emu:
        with pytest.raises(aiohttp.ClientError):
            await post(emu, "anthropic")
        stats = emu.stats().models["m"]
    assert (stats.faults, stats.abandoned) == (1, 0) and billed(stats) == (0, 0, 0)


# --- token limits --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tpm_without_refund_keeps_max_tokens_charged_like_azure() -> None:
    # Holds 1,000 tokens; each request is charged 7 prompt + 400 max_tokens and writes 3.
    prompt = count_prompt_tokens([("user", "q0")])
    outcomes = {}
    for refund in (True, False):
        clock = FakeClock()
        spec = EmulatorSpec(models={"m": ModelLimits(tpm=60_000, refund_unused_tokens=refund)})
        async with run_emulator(spec, clock=clock) as emu:
            outcomes[refund] = [(await post(emu, "openai", f"q{i}", max_tokens=400)).status for i in range(4)]
            remaining = int(emu._limiters["m"].tokens.remaining())
        outcomes[refund].append(remaining)
    assert outcomes[True][:4] == [200] * 4
    assert outcomes[False][:4] == [200, 200, 429, 429]
    assert outcomes[True][4] == 1000 - 4 * (prompt + 3)
    assert outcomes[False][4] == 1000 - 2 * (prompt + 400)


@pytest.mark.anyio
async def test_anthropic_itpm_and_otpm_are_separate_buckets_with_their_own_headers() -> None:
    clock = FakeClock()
    # ITPM holds 100 input tokens, OTPM 50 output tokens (charged max_tokens, refunded to real output).
    spec = EmulatorSpec(models={"m": ModelLimits(rpm=600, itpm=6000, otpm=3000)}, output_tokens=5)
    async with run_emulator(spec, clock=clock) as emu:
        ok = await post(emu, "anthropic", max_tokens=40)
        too_much_output = await post(emu, "anthropic", max_tokens=50)  # 45 left after the refund: 429
        long_prompt = await post(emu, "anthropic", "word " * 200, max_tokens=5)  # > ITPM's 100: 429
    headers = ok.headers
    assert ok.status == 200
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "6000"
    assert int(headers["anthropic-ratelimit-input-tokens-remaining"]) == 100 - PROMPT_TOKENS
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "3000"
    assert int(headers["anthropic-ratelimit-output-tokens-remaining"]) == 50 - 5
    assert headers["anthropic-ratelimit-input-tokens-reset"].endswith("Z")
    # The combined tokens-* headers describe the most restrictive token limit.
    assert headers["anthropic-ratelimit-tokens-limit"] == "3000"
    assert headers["anthropic-ratelimit-requests-limit"] == "600"
    assert too_much_output.status == 429 and too_much_output.json()["error"]["type"] == "rate_limit_error"
    assert float(too_much_output.headers["retry-after-ms"]) > 0
    assert long_prompt.status == 429


@pytest.mark.anyio
async def test_groq_reports_requests_per_day_and_tokens_per_minute_in_the_openai_headers() -> None:
    clock = FakeClock()
    limits = ModelLimits(rpm=30, rpd=14_400, tpm=6000, header_dialect="groq")
    async with run_emulator(EmulatorSpec(models={"m": limits}), clock=clock) as emu:
        reply = await post(emu, "openai")
        clock.now += 2.0  # the RPM bucket (one request at a time) has refilled, RPD has not
        second = await post(emu, "openai", "again")
    # https://console.groq.com/docs/rate-limits: limit-requests is RPD, limit-tokens TPM,
    # reset-requests a long duration such as "2m59.56s".
    headers = reply.headers
    assert headers["x-ratelimit-limit-requests"] == "14400"
    assert headers["x-ratelimit-remaining-requests"] == "14399"
    assert headers["x-ratelimit-reset-requests"] == "6s"  # one request at 14,400/day
    assert headers["x-ratelimit-limit-tokens"] == "6000"
    assert second.status == 200 and second.headers["x-ratelimit-remaining-requests"] == "14398"
    assert second.headers["x-ratelimit-reset-requests"] == "10s"


@pytest.mark.anyio
async def test_requests_per_day_run_out_with_a_long_retry_after() -> None:
    clock = FakeClock()
    async with run_emulator(EmulatorSpec(models={"m": ModelLimits(rpd=2, header_dialect="groq")}), clock=clock) as emu:
        statuses = [(await post(emu, "openai", f"q{i}")).status for i in range(3)]
        refused = await post(emu, "openai", "later")
    assert statuses == [200, 200, 429]
    assert int(refused.headers["retry-after"]) == 43_200  # a day for two requests: one back in 12 h
    assert refused.headers["x-ratelimit-reset-requests"] == "24h0m0s"


@pytest.mark.anyio
async def test_requests_running_when_the_quota_runs_out_count_against_it() -> None:
    spec = EmulatorSpec(models={"m": ModelLimits(quota_requests=3)}, latency=Latency(median_ms=200))
    async with run_emulator(spec) as emu:
        replies: list[Reply] = []

        async def one(i: int) -> None:
            replies.append(await post(emu, "openai", f"q{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
        stats = emu.stats().models["m"]
    assert sorted(r.status for r in replies) == [200] * 3 + [429] * 5
    assert (stats.billed_requests, stats.quota_refused) == (3, 5)


def test_new_options_are_validated_and_travel_as_json() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        Faults(error_rate=0.5, truncated_rate=0.6)
    with pytest.raises(ValueError, match="overload needs"):
        Overload(start_s=0, duration_s=0)
    with pytest.raises(ValueError, match="`otpm` must be > 0"):
        ModelLimits(otpm=0)
    spec = EmulatorSpec(
        models={"m": ModelLimits(quota_requests=5, header_dialect="groq", rpd=100)},
        billing=Billing(abandoned=True),
        overloads=[Overload(start_s=1, duration_s=2, rate=0.5)],
    )
    assert msgspec.json.decode(msgspec.json.encode(spec), type=EmulatorSpec) == spec
