"""Adapters: what goes on the wire, how answers decode, and how every failure is classified."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import anyio
import msgspec
import pytest
from aiohttp import web

from adapters import ChatClient, anthropic, gemini, make_client, openai
from adapters.classify import parse_duration_s, rate_limit_info, retry_after_s
from core.calls import ChatRequest, Message
from core.errors import AccountError, ConfigError, Permanent, Retryable, Unusable
from emulator import (
    EmulatorSpec,
    Faults,
    Latency,
    count_prompt_tokens,
    run_emulator,
)

PROVIDERS = ("openai", "gemini", "anthropic")
ADAPTERS = {"openai": openai, "gemini": gemini, "anthropic": anthropic}
KEY = "sk-test-SECRET-0123456789"
REQUEST = ChatRequest(
    model="teacher-1",
    messages=(
        Message("system", "You are a careful teacher."),
        Message("user", "What is 12 * 7?"),
        Message("assistant", "Let me think."),
        Message("user", "Please answer."),
    ),
    temperature=0.5,
    top_p=0.9,
    max_tokens=64,
)


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A throwaway HTTP server on 127.0.0.1 answering every path with `handler`; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def base_url(url: str, provider: str) -> str:
    return url + "/v1" if provider == "openai" else url


async def complete_once(provider: str, url: str, request: ChatRequest = REQUEST, timeout_s: float = 5.0):
    async with ChatClient(provider, api_key=KEY, base_url=base_url(url, provider)) as client:
        return await client.complete(request, timeout_s=timeout_s)


# --- request shape -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_openai_request_on_the_wire() -> None:
    seen: dict = {}

    async def capture(request: web.Request) -> web.Response:
        seen.update(path=request.path, method=request.method, headers=dict(request.headers), body=await request.json())
        return web.json_response(
            {
                "choices": [{"message": {"content": "84"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 1},
            }
        )

    async with serve(capture) as url:
        result = await complete_once("openai", url)
    assert (seen["method"], seen["path"]) == ("POST", "/v1/chat/completions")
    assert seen["headers"]["Authorization"] == f"Bearer {KEY}"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["body"] == {
        "messages": [{"role": m.role, "content": m.content} for m in REQUEST.messages],
        "model": "teacher-1",
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
    }
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason) == ("84", 30, 1, "stop")


@pytest.mark.anyio
async def test_gemini_request_on_the_wire() -> None:
    seen: dict = {}

    async def capture(request: web.Request) -> web.Response:
        seen.update(path=request.path, headers=dict(request.headers), body=await request.json())
        return web.json_response(
            {
                "candidates": [{"content": {"parts": [{"text": "84"}], "role": "model"}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 1},
            }
        )

    async with serve(capture) as url:
        result = await complete_once("gemini", url)
    assert seen["path"] == "/v1beta/models/teacher-1:generateContent"
    assert seen["headers"]["x-goog-api-key"] == KEY
    assert "Authorization" not in seen["headers"]
    assert seen["body"] == {
        "contents": [
            {"parts": [{"text": "What is 12 * 7?"}], "role": "user"},
            {"parts": [{"text": "Let me think."}], "role": "model"},
            {"parts": [{"text": "Please answer."}], "role": "user"},
        ],
        "systemInstruction": {"parts": [{"text": "You are a careful teacher."}]},
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 64},
    }
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason) == ("84", 30, 1, "STOP")


@pytest.mark.anyio
async def test_anthropic_request_on_the_wire() -> None:
    seen: list[dict] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(dict(path=request.path, headers=dict(request.headers), body=await request.json()))
        return web.json_response(
            {
                "content": [{"type": "text", "text": "84"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
            }
        )

    async with serve(capture) as url:
        result = await complete_once("anthropic", url)
        await complete_once("anthropic", url, msgspec.structs.replace(REQUEST, top_p=1.0))
    assert seen[0]["path"] == "/v1/messages"
    assert seen[0]["headers"]["x-api-key"] == KEY
    assert seen[0]["headers"]["anthropic-version"] == "2023-06-01"
    assert seen[0]["body"] == {
        "model": "teacher-1",
        "messages": [{"role": m.role, "content": m.content} for m in REQUEST.messages[1:]],
        "max_tokens": 64,
        "system": "You are a careful teacher.",
        "temperature": 0.5,
        "top_p": 0.9,
    }
    # top_p at its default stays off the wire: recent Claude models refuse it next to temperature.
    assert "top_p" not in seen[1]["body"]
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason) == ("84", 30, 1, "end_turn")


def test_default_base_urls_follow_the_official_sdks() -> None:
    assert openai.url(openai.DEFAULT_BASE_URL, "m") == "https://api.openai.com/v1/chat/completions"
    assert gemini.url(gemini.DEFAULT_BASE_URL, "gemini-2.0-flash") == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert anthropic.url(anthropic.DEFAULT_BASE_URL + "/", "m") == "https://api.anthropic.com/v1/messages"


# --- responses from the emulator -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_decodes_emulator_answers_with_usage(provider: str) -> None:
    async with run_emulator(EmulatorSpec(output_tokens=20)) as emu:
        result = await complete_once(provider, emu.url)
        short = await complete_once(provider, emu.url, msgspec.structs.replace(REQUEST, max_tokens=5))
    expected_input = count_prompt_tokens([(m.role, m.content) for m in REQUEST.messages])
    assert (result.input_tokens, result.output_tokens) == (expected_input, 20)
    assert result.finish_reason == {"openai": "stop", "gemini": "STOP", "anthropic": "end_turn"}[provider]
    assert result.text.startswith("Please answer")
    assert result.latency_s > 0
    assert short.output_tokens == 5
    assert short.finish_reason == {"openai": "length", "gemini": "MAX_TOKENS", "anthropic": "max_tokens"}[provider]


# --- error classification ------------------------------------------------------------------------

ERROR_BODIES = {
    "openai": b'{"error": {"message": "boom", "type": "invalid_request_error", "param": null, "code": null}}',
    "gemini": b'{"error": {"code": 400, "message": "boom", "status": "INVALID_ARGUMENT"}}',
    "anthropic": b'{"type": "error", "error": {"type": "invalid_request_error", "message": "boom"}}',
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent(provider: str, status: int) -> None:
    with pytest.raises(Permanent, match=rf"^HTTP {status}: .*boom$"):
        ADAPTERS[provider].decode(status, {}, ERROR_BODIES[provider], 0.1)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retryable(provider: str, status: int) -> None:
    with pytest.raises(Retryable) as caught:
        ADAPTERS[provider].decode(status, {"retry-after": "3"}, ERROR_BODIES[provider], 0.1)
    assert caught.value.rate_limited == (status == 429)
    assert caught.value.after_s == 3.0
    assert "boom" in caught.value.reason


def test_x_should_retry_header_wins_over_the_status() -> None:
    with pytest.raises(Retryable):
        openai.decode(400, {"x-should-retry": "true"}, ERROR_BODIES["openai"], 0.1)
    with pytest.raises(Permanent):
        openai.decode(503, {"x-should-retry": "false"}, ERROR_BODIES["openai"], 0.1)


def test_gemini_429_delay_comes_from_retry_info_in_the_body() -> None:
    body = (
        b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": '
        b'[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}}'
    )
    with pytest.raises(Retryable, match="RESOURCE_EXHAUSTED: Quota exceeded") as caught:
        gemini.decode(429, {}, body, 0.1)
    assert caught.value.rate_limited and caught.value.after_s == 17.0


def test_error_detail_is_cut_to_one_short_line() -> None:
    body = msgspec.json.encode({"error": {"message": "x\n" * 500}})
    with pytest.raises(Permanent) as caught:
        openai.decode(400, {}, body, 0.1)
    assert len(caught.value.reason) < 220 and "\n" not in caught.value.reason


@pytest.mark.parametrize(
    ("provider", "body", "kind", "match"),
    [
        (
            "openai",
            b'{"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}',
            "filtered",
            "content filter",
        ),
        (
            "openai",
            b'{"choices": [{"message": {"content": null, "refusal": "I cannot."}, "finish_reason": "stop"}]}',
            "refused",
            "refused: I cannot",
        ),
        (
            "openai",
            b'{"choices": [{"message": {"content": ""}, "finish_reason": "length"}]}',
            "truncated",
            "finish_reason=length",
        ),
        ("openai", b'{"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}', "empty", "empty answer"),
        ("gemini", b'{"promptFeedback": {"blockReason": "SAFETY"}}', "filtered", "blockReason=SAFETY"),
        ("gemini", b'{"candidates": [{"finishReason": "RECITATION"}]}', "filtered", "finishReason=RECITATION"),
        ("gemini", b'{"candidates": [{"finishReason": "PROHIBITED_CONTENT"}]}', "filtered", "PROHIBITED_CONTENT"),
        (
            "gemini",
            (
                b'{"candidates": [{"finishReason": "MAX_TOKENS", "content": {"parts": [{"text": "hm", '
                b'"thought": true}]}}]}'
            ),
            "truncated",
            "MAX_TOKENS",
        ),
        ("anthropic", b'{"content": [], "stop_reason": "refusal"}', "refused", "refusal"),
        ("anthropic", b'{"content": [], "stop_reason": "max_tokens"}', "truncated", "stop_reason=max_tokens"),
        (
            "anthropic",
            b'{"content": [{"type": "text", "text": ""}], "stop_reason": "end_turn"}',
            "empty",
            "empty answer",
        ),
    ],
)
def test_answers_without_text_are_unusable_not_retryable(provider: str, body: bytes, kind: str, match: str) -> None:
    with pytest.raises(Unusable, match=match) as caught:
        ADAPTERS[provider].decode(200, {}, body, 0.1)
    assert caught.value.kind == kind and caught.value.http_status == 200
    assert caught.value.input_tokens is None  # no usage in these bodies: the engine estimates it


@pytest.mark.parametrize(
    ("provider", "body", "usage"),
    [
        (
            "openai",
            (
                b'{"choices": [{"message": {"content": null}, "finish_reason": "length"}], '
                b'"usage": {"prompt_tokens": 30, "completion_tokens": 64}}'
            ),
            (30, 64),
        ),
        (
            "gemini",
            (
                b'{"candidates": [{"finishReason": "SAFETY"}], '
                b'"usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 0, "thoughtsTokenCount": 12}}'
            ),
            (30, 12),
        ),
        (
            "anthropic",
            b'{"content": [], "stop_reason": "refusal", "usage": {"input_tokens": 30, "output_tokens": 3}}',
            (30, 3),
        ),
    ],
)
def test_an_unusable_answer_carries_its_billed_usage(provider: str, body: bytes, usage: tuple[int, int]) -> None:
    with pytest.raises(Unusable) as caught:
        ADAPTERS[provider].decode(200, {}, body, 0.1)
    assert (caught.value.input_tokens, caught.value.output_tokens) == usage


@pytest.mark.parametrize(
    ("provider", "body", "match"),
    [
        ("openai", b'{"choices": []}', "no choices"),
        ("openai", b'{"choices": null}', "unexpected response shape"),
        ("gemini", b'{"candidates": []}', "no candidates"),
        ("gemini", b"{}", "no candidates"),
        ("anthropic", b'{"content": [{"type": "te', "truncated or malformed JSON"),
        ("openai", b"", "empty body"),
        ("gemini", b"<html><body>Bad gateway</body></html>", "HTML instead of JSON"),
        ("anthropic", b"upstream connect error", "not JSON"),
    ],
)
def test_unusable_200_bodies_are_retryable(provider: str, body: bytes, match: str) -> None:
    with pytest.raises(Retryable, match=match) as caught:
        ADAPTERS[provider].decode(200, {}, body, 0.1)
    assert caught.value.http_status == 200


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("error_rate", r"^HTTP (500|503|529): "),
        ("reset_rate", r"^connection to http://127\.0\.0\.1:\d+(/v1)? "),
        ("hang_rate", r"^timeout after 0\.2s$"),
        ("malformed_rate", r"^unreadable response: truncated or malformed JSON"),
    ],
)
async def test_injected_faults_are_retryable(provider: str, fault: str, match: str) -> None:
    async with run_emulator(EmulatorSpec(faults=Faults(**{fault: 1.0}))) as emu:
        with pytest.raises(Retryable, match=match):
            await complete_once(provider, emu.url, timeout_s=0.2)
        assert emu.stats().total.faults == 1 and emu.stats().total.completed == 0


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_injected_empty_answer_is_unusable(provider: str) -> None:
    async with run_emulator(EmulatorSpec(faults=Faults(empty_rate=1.0))) as emu:
        with pytest.raises(Unusable, match=r"^empty answer") as caught:
            await complete_once(provider, emu.url, timeout_s=0.2)
        assert caught.value.kind == "empty"


@pytest.mark.anyio
async def test_html_error_page_is_named_in_the_reason() -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<!DOCTYPE html><html>nginx</html>", content_type="text/html")

    async with serve(bad_gateway) as url:
        with pytest.raises(Retryable, match=r"^HTTP 502: HTML instead of JSON"):
            await complete_once("openai", url)


@pytest.mark.anyio
async def test_connection_refused_is_one_line_retryable() -> None:
    # A port that was just free and is not listening refuses connections.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(Retryable) as caught:
        await complete_once("openai", url)
    assert str(caught.value) == f"cannot connect to {url}/v1 (connection refused)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.anyio
async def test_api_key_never_shows_in_errors_or_repr() -> None:
    async def echo_key(request: web.Request) -> web.Response:
        message = f"Incorrect API key provided: {request.headers['Authorization'][7:]}"
        return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=401)

    async with serve(echo_key) as url:
        client = make_client("openai", api_key=KEY, base_url=url + "/v1", name="teacher-a")
        assert KEY not in repr(client) and "teacher-a" in repr(client)
        async with client:
            with pytest.raises(Permanent) as caught:
                await client.complete(REQUEST, timeout_s=5)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert "Incorrect API key provided: ***" in caught.value.reason


def test_unknown_provider_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'mistral'"):
        ChatClient("mistral", api_key=KEY)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_cancellation_is_never_swallowed() -> None:
    async with run_emulator(EmulatorSpec(latency=Latency(median_ms=10_000))) as emu:
        async with ChatClient("anthropic", api_key=KEY, base_url=emu.url) as client:
            with anyio.move_on_after(0.2) as scope:
                await client.complete(REQUEST, timeout_s=30)
                pytest.fail("complete() returned though its scope was cancelled")
            assert scope.cancelled_caught


# --- headers -------------------------------------------------------------------------------------


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28.0 <= retry_after_s({"retry-after": in_30s}) <= 30.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after-ms": "x", "retry-after": "4"}) == 4.0
    assert retry_after_s({}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("2m", 120.0),
        ("", None),
        ("soon", None),
        ("-1s", None),
        ("5x", None),
    ],
)
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration_s(text) == seconds


def test_openai_rate_limit_headers() -> None:
    info = rate_limit_info(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "29000",
            "x-ratelimit-reset-tokens": "2s",
        }
    )
    assert info is not None
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s) == (500, 499, 0.12)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s) == (30000, 29000, 2.0)


def test_anthropic_rate_limit_headers() -> None:
    reset = (datetime.now(timezone.utc) + timedelta(seconds=20)).isoformat(timespec="seconds").replace("+00:00", "Z")
    info = rate_limit_info(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "not a date",
        }
    )
    assert info is not None
    assert (info.limit_requests, info.remaining_requests, info.limit_tokens) == (50, 49, 40000)
    assert 18.0 <= info.reset_requests_s <= 20.0
    assert info.reset_tokens_s is None
    assert rate_limit_info({"content-type": "application/json"}) is None


# --- accounts, overload, bad input, hostile headers -----------------------------------------------


@pytest.mark.parametrize(
    ("provider", "status", "body", "cause"),
    [
        (
            "openai",
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            "out of quota",
        ),
        (
            "gemini",
            429,
            {
                "error": {
                    "code": 429,
                    "status": "RESOURCE_EXHAUSTED",
                    "message": "quota",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
                        }
                    ],
                }
            },
            "daily quota exhausted",
        ),
        (
            "anthropic",
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API.",
                },
            },
            "credit balance too low",
        ),
        ("openai", 401, {"error": {"message": "bad key", "type": "invalid_request_error"}}, "API key refused"),
        (
            "anthropic",
            403,
            {"type": "error", "error": {"type": "permission_error", "message": "no"}},
            "API key refused",
        ),
    ],
)
def test_account_errors_are_their_own_kind(provider: str, status: int, body: dict, cause: str) -> None:
    with pytest.raises(AccountError) as caught:
        ADAPTERS[provider].decode(status, {}, msgspec.json.encode(body), 0.1)
    assert caught.value.cause.startswith(cause) and caught.value.http_status == status


def test_a_per_minute_quota_and_a_plain_400_are_not_account_errors() -> None:
    per_minute = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "slow down",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
                }
            ],
        }
    }
    with pytest.raises(Retryable) as caught:
        gemini.decode(429, {}, msgspec.json.encode(per_minute), 0.1)
    assert caught.value.rate_limited and not isinstance(caught.value, AccountError)
    with pytest.raises(Permanent) as caught_400:
        anthropic.decode(400, {}, b'{"error": {"type": "invalid_request_error", "message": "bad field"}}', 0.1)
    assert not isinstance(caught_400.value, AccountError)


@pytest.mark.parametrize(
    ("provider", "status"), [("openai", 503), ("anthropic", 529), ("gemini", 503), ("openai", 502), ("gemini", 504)]
)
def test_overload_answers_are_marked_overloaded(provider: str, status: int) -> None:
    with pytest.raises(Retryable) as caught:
        ADAPTERS[provider].decode(status, {}, b'{"error": {"message": "overloaded"}}', 0.1)
    assert caught.value.overloaded and not caught.value.rate_limited and caught.value.http_status == status


def test_an_internal_error_is_retryable_but_not_overload() -> None:
    with pytest.raises(Retryable) as caught:
        openai.decode(500, {}, b'{"error": {"message": "internal", "type": "server_error"}}', 0.1)
    assert not caught.value.overloaded


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_200_carrying_an_error_object_says_so(provider: str) -> None:
    with pytest.raises(Retryable, match=r"^HTTP 200 carrying an error: server_error: boom") as caught:
        ADAPTERS[provider].decode(200, {}, b'{"error": {"message": "boom", "type": "server_error"}}', 0.1)
    assert not caught.value.possibly_billed and caught.value.http_status == 200


def test_a_truncated_200_body_is_possibly_billed() -> None:
    with pytest.raises(Retryable) as caught:
        openai.decode(200, {}, b'{"choices": [{"message": {"cont', 0.1)
    assert caught.value.possibly_billed


def test_an_answer_without_usage_is_marked() -> None:
    result = openai.decode(200, {}, b'{"choices": [{"message": {"content": "42"}, "finish_reason": "stop"}]}', 0.1)
    assert result.text == "42" and not result.usage_reported


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "1e300", "-5"])
def test_absurd_rate_limit_headers_are_ignored_not_fatal(value: str) -> None:
    info = rate_limit_info(
        {
            "x-ratelimit-limit-requests": value,
            "x-ratelimit-remaining-requests": value,
            "x-ratelimit-limit-tokens": value,
            "x-ratelimit-reset-requests": f"{value}s",
        }
    )
    assert info is not None and info.limit_requests is None and info.limit_tokens is None
    assert info.reset_requests_s is None or info.reset_requests_s >= 0
    anthropic_info = rate_limit_info({"anthropic-ratelimit-requests-limit": value})
    assert anthropic_info is not None and anthropic_info.limit_requests is None


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-inf"])
def test_absurd_retry_after_is_absent(value: str) -> None:
    assert retry_after_s({"retry-after": value}) is None
    assert retry_after_s({"retry-after-ms": value}) is None


def test_parse_duration_rejects_infinite_values() -> None:
    assert parse_duration_s("1e400s") is None and parse_duration_s("infs") is None


def test_a_retry_after_date_without_a_zone_is_gmt(monkeypatch) -> None:
    # A machine far from GMT: read as local time, the date would be hours off.
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        when = datetime.now(timezone.utc) + timedelta(seconds=30)
        no_zone = when.strftime("%a, %d %b %Y %H:%M:%S")
        assert retry_after_s({"retry-after": no_zone}) == pytest.approx(30, abs=2)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_anthropic_input_and_output_token_limits_are_read() -> None:
    info = rate_limit_info(
        {
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-tokens-limit": "8000",
        }
    )
    assert info is not None and (info.limit_input_tokens, info.limit_output_tokens) == (40_000, 8_000)


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_huge_body_is_refused_in_one_line_without_reading_it_all(chunked: bool) -> None:
    from adapters.client import MAX_BODY_BYTES

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = MAX_BODY_BYTES + 1
        await response.prepare(request)
        try:
            for _ in range(MAX_BODY_BYTES // 2**20 + 2):
                await response.write(b" " * 2**20)
        except ConnectionError:
            pass
        return response

    async with serve(huge) as url:
        with pytest.raises(Retryable, match=r"^response body too large") as caught:
            await complete_once("openai", url)
    assert "\n" not in str(caught.value) and caught.value.possibly_billed


@pytest.mark.anyio
async def test_a_key_sent_over_plain_http_to_another_host_is_warned_about_once(caplog) -> None:
    with caplog.at_level("WARNING", logger="adapters.client"):
        ChatClient("openai", api_key=KEY, base_url="http://api.example.com/v1", name="gpt")
        ChatClient("openai", api_key=KEY, base_url="http://127.0.0.1:8000/v1", name="local")
        ChatClient("openai", api_key=KEY, base_url="http://localhost:8000/v1", name="local2")
        ChatClient("openai", api_key=KEY, base_url="https://api.example.com/v1", name="tls")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'gpt'" in warnings[0] and "http://" in warnings[0]
    assert KEY not in warnings[0]


# --- garbled usage (issue 10) ----------------------------------------------------------------------

_GARBLED = ["-100000000", "1000000000000000000000000000000", "9" * 400, "1e400", "null", "true", "12.5", '"12"']


def _answer_body(provider: str, prompt: str, text: str = "42") -> bytes:
    """A proper answer whose prompt-token figure is `prompt`, raw JSON."""
    if provider == "openai":
        return (
            b'{"choices": [{"message": {"content": "%s"}, "finish_reason": "stop"}], '
            b'"usage": {"prompt_tokens": %s, "completion_tokens": 5}}' % (text.encode(), prompt.encode())
        )
    if provider == "anthropic":
        content = b'[{"type": "text", "text": "%s"}]' % text.encode() if text else b"[]"
        return b'{"content": %s, "stop_reason": "end_turn", "usage": {"input_tokens": %s, "output_tokens": 5}}' % (
            content,
            prompt.encode(),
        )
    parts = b'[{"text": "%s"}]' % text.encode() if text else b"[]"
    return (
        b'{"candidates": [{"content": {"parts": %s}, "finishReason": "STOP"}], '
        b'"usageMetadata": {"promptTokenCount": %s, "candidatesTokenCount": 5}}' % (parts, prompt.encode())
    )


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("prompt", _GARBLED)
def test_garbled_usage_is_not_reported_and_the_answer_is_kept(provider: str, prompt: str) -> None:
    # Before: a validation error (null, 1e400, a string) made a billed answer Retryable and
    # bought it again; a negative or huge int was billed as is.
    result = ADAPTERS[provider].decode(200, {}, _answer_body(provider, prompt), 0.1)
    assert result.text == "42" and not result.usage_reported
    assert (result.input_tokens, result.output_tokens) == (0, 0)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_garbled_usage_of_an_unusable_answer_is_left_for_the_lane_to_estimate(provider: str) -> None:
    with pytest.raises(Unusable) as caught:
        ADAPTERS[provider].decode(200, {}, _answer_body(provider, "-7", text=""), 0.1)
    assert (caught.value.input_tokens, caught.value.output_tokens) == (None, None)


def test_plausible_usage_still_decodes_and_anthropic_null_cache_counts_are_zero() -> None:
    body = (
        b'{"content": [{"type": "text", "text": "42"}], "stop_reason": "end_turn", "usage": {"input_tokens": 7,'
        b' "output_tokens": 5, "cache_creation_input_tokens": null, "cache_read_input_tokens": 3}}'
    )
    result = anthropic.decode(200, {}, body, 0.1)
    assert (result.usage_reported, result.input_tokens, result.output_tokens) == (True, 10, 5)
    result = gemini.decode(
        200,
        {},
        b'{"candidates": [{"content": {"parts": [{"text": "42"}]}}], "usageMetadata": {"promptTokenCount": 7}}',
        0.1,
    )
    assert (result.usage_reported, result.input_tokens, result.output_tokens) == (True, 7, 0)


# --- no connection in time (issue 10) ---------------------------------------------------------------


@pytest.mark.anyio
async def test_no_pooled_connection_in_time_is_not_possibly_billed() -> None:
    # A pool of one held busy by a first request the server never answers: the second
    # request never gets a connection, so it was never sent and cannot have been billed.
    release, arrived = anyio.Event(), anyio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response({})

    async def hold(client: ChatClient) -> None:
        # Answered `{}` once released: a Retryable we do not look at.
        with pytest.raises(Retryable):
            await client.complete(REQUEST, timeout_s=5.0)

    async with (
        serve(hang) as url,
        ChatClient("openai", api_key=KEY, base_url=base_url(url, "openai"), max_connections=1) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(hold, client)
        await arrived.wait()  # it holds the only connection now
        with pytest.raises(Retryable) as caught:
            await client.complete(REQUEST, timeout_s=0.3)
        release.set()
    assert not caught.value.possibly_billed and "no connection" in str(caught.value)
