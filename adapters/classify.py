"""What an HTTP answer means: success, retry later, or give up; shared by every adapter.

One small function decides retryable versus permanent for a status code (the rule
the official OpenAI SDK uses in `_should_retry`, openai/openai-python
`src/openai/_base_client.py`), and the server's requested delay is read the same
way the SDK reads it: `retry-after-ms`, then `retry-after` as seconds, then as an
HTTP date. Rate-limit headers are parsed into `RateLimitInfo` for the lane.

Header mappings are looked up with lowercase names: aiohttp's are case-insensitive,
and tests pass plain dicts with lowercase keys.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import msgspec

from core.calls import NO_DETAIL, ChatResult, RateLimitInfo, UsageDetail
from core.errors import AccountError, CommitteeError, Permanent, Retryable, Unusable

# The provider (or its gateway) has no capacity now: OpenAI and Gemini answer 503, Anthropic
# 529 overloaded_error (https://docs.anthropic.com/en/api/errors), gateways 502/504 in an
# outage. A 500 is an internal error of one request, retried like any other.
OVERLOAD_STATUSES = frozenset({502, 503, 504, 529})
# Provider text in an exception is cut here: enough to read, never a whole page.
MAX_DETAIL_CHARS = 200


class _Violation(msgspec.Struct):
    quotaId: str = ""


class _ErrorInfo(msgspec.Struct):
    # Gemini: google.rpc.QuotaFailure / RetryInfo details.
    type: str = msgspec.field(name="@type", default="")
    violations: list[_Violation] = []


class _ErrorDetail(msgspec.Struct):
    # OpenAI: message/type/code; Anthropic: type/message; Gemini: code/message/status/details.
    message: str = ""
    type: str | None = None
    status: str | None = None
    code: str | int | None = None
    details: list[_ErrorInfo] = []


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    # Some OpenAI-compatible servers (older vLLM, llama.cpp) answer {"message": ...}.
    message: str | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def _error_body(body: bytes) -> _ErrorBody | None:
    try:
        return _error_decoder.decode(body)
    except msgspec.DecodeError:
        return None


def error_detail(body: bytes) -> str:
    """The provider's error message from an error body, or a short description of the body."""
    parsed = _error_body(body)
    if parsed is None:
        return describe_body(body)
    error = parsed.error
    if isinstance(error, str):
        return shorten(error)
    if error is not None:
        label = error.status or error.type
        text = f"{label}: {error.message}" if label and error.message else error.message or label or ""
        if text:
            return shorten(text)
    return shorten(parsed.message) if parsed.message else describe_body(body)


def account_problem(status: int, body: bytes) -> str | None:
    """What is wrong with the account when this error says so (a few words); None for any other error.

    Out of quota or credit is permanent until someone pays, unlike a rate limit:
    - OpenAI: 429 with `error.code`/`error.type` "insufficient_quota"
      (https://platform.openai.com/docs/guides/error-codes#api-errors);
    - Gemini: 429 RESOURCE_EXHAUSTED whose `google.rpc.QuotaFailure` names a per-day
      quota (https://ai.google.dev/gemini-api/docs/rate-limits, `...PerDay...` quota ids);
    - Anthropic: 400 "Your credit balance is too low" (https://docs.anthropic.com/en/api/errors);
    - any provider: 401/403, the key is refused or lacks access.
    """
    if status in (401, 403):
        return "API key refused"
    if status not in (400, 429):
        return None
    parsed = _error_body(body)
    error = parsed.error if parsed is not None else None
    if not isinstance(error, _ErrorDetail):
        return None
    if status == 429 and "insufficient_quota" in (error.code, error.type):
        return "out of quota"
    if status == 429:
        for info in error.details:
            if info.type.endswith("google.rpc.QuotaFailure"):
                daily = [v.quotaId for v in info.violations if "PerDay" in v.quotaId]
                if daily:
                    return f"daily quota exhausted ({daily[0]})"
    if status == 400 and "credit balance" in error.message.lower():
        return "credit balance too low"
    return None


def describe_body(body: bytes) -> str:
    """A one-phrase description of a body that is not the JSON we expected."""
    if not body.strip():
        return "empty body"
    head = body.lstrip()[:60].decode("utf-8", "replace")
    if head.startswith("<"):
        return f"HTML instead of JSON ({head!r}...)"
    if head.startswith(("{", "[")):
        return f"truncated or malformed JSON ({len(body)} bytes, starts {head!r})"
    return f"not JSON ({head!r}...)"


def malformed(body: bytes, exc: msgspec.DecodeError, status: int = 200) -> Retryable:
    """The Retryable for a 2xx whose body we cannot read (garbled, truncated, HTML, wrong shape).

    A 2xx means the model ran, so the attempt counts as possibly billed. A 2xx whose
    body is an error object (some OpenAI-compatible hosts send them) is said as such.
    """
    parsed = _error_body(body)
    if parsed is not None and parsed.error is not None:
        return Retryable(f"HTTP {status} carrying an error: {error_detail(body)}", http_status=status)
    if isinstance(exc, msgspec.ValidationError):
        reason = shorten(f"unexpected response shape: {exc}")
    else:
        reason = f"unreadable response: {describe_body(body)}"
    return Retryable(reason, possibly_billed=True, http_status=status)


def check_status(status: int, headers: Mapping[str, str], body: bytes, *, after_s: float | None = None) -> None:
    """Nothing for a 2xx; else raises the classified error of the status (`AccountError`, `Retryable`, `Permanent`)."""
    if 200 <= status < 300:
        return
    cause = account_problem(status, body)
    if cause is not None:
        raise AccountError(f"HTTP {status}: {error_detail(body)}", cause=cause, http_status=status)
    raise error_for(status, headers, error_detail(body), after_s=after_s)


def decode_success(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    decoder: msgspec.json.Decoder,
    *,
    after_s: float | None = None,
):
    """The decoded body of a 2xx; else the classified error for the status, or Retryable for a garbled body.

    `after_s` is a provider-specific retry delay found in an error body (Gemini's RetryInfo).
    """
    check_status(status, headers, body, after_s=after_s)
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise malformed(body, exc, status) from None


def no_text(text: str | None, finish_reason: str, *, field: str, truncated_by: str, status: int) -> Unusable | None:
    """None when the answer has text; else `Unusable` "truncated" when max_tokens ended it, "empty" otherwise.

    `field` is the provider's name for the finish reason, `truncated_by` its value for max_tokens:
    `no_text(text, "length", field="finish_reason", truncated_by="length", status=200)`.
    """
    if text:
        return None
    if finish_reason == truncated_by:
        return Unusable(
            "truncated", f"max_tokens reached before any text ({field}={finish_reason})", http_status=status
        )
    return Unusable("empty", f"empty answer ({field}={finish_reason})", http_status=status)


def chat_result(
    text: str | None,
    finish_reason: str,
    input_tokens: int | None,
    output_tokens: int | None,
    unusable: Unusable | None,
    *,
    status: int,
    headers: Mapping[str, str],
    latency_s: float,
    detail: UsageDetail | None = None,
) -> ChatResult:
    """The result of a decoded 2xx answer; raises `unusable`, with the usage when both counts were reported.

    Usage counts as reported only when both are (`None` is missing or implausible); otherwise the
    result carries 0 and 0 with `usage_reported=False`, so the caller bills its estimate.
    `detail` (reasoning, cached tokens) goes with the usage, clamped to lie inside it.
    """
    usage = (input_tokens, output_tokens) if input_tokens is not None and output_tokens is not None else None
    usage_reported = usage is not None
    detail = _within(detail, *usage) if usage is not None and detail is not None else NO_DETAIL
    if unusable is not None:
        if usage is not None:
            unusable.input_tokens, unusable.output_tokens = usage
            unusable.detail = detail
        raise unusable
    assert text is not None
    return ChatResult(
        text=text,
        input_tokens=usage[0] if usage is not None else 0,
        output_tokens=usage[1] if usage is not None else 0,
        finish_reason=finish_reason,
        latency_s=latency_s,
        rate_limit=rate_limit_info(headers),
        usage_reported=usage_reported,
        http_status=status,
        detail=detail,
    )


def _within(detail: UsageDetail, input_tokens: int, output_tokens: int) -> UsageDetail:
    """`detail` with each part cut to the total it lies in: a provider's slip must not bill more than it reported."""
    cache_read = min(detail.cache_read_tokens, input_tokens)
    return UsageDetail(
        reasoning_tokens=min(detail.reasoning_tokens, output_tokens),
        cache_read_tokens=cache_read,
        cache_write_tokens=min(detail.cache_write_tokens, input_tokens - cache_read),
    )


def shorten(text: str) -> str:
    """`text` on one line, at most MAX_DETAIL_CHARS characters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and every 5xx (529 overloaded included) are worth retrying."""
    return status in (408, 409, 429) or status >= 500


def error_for(status: int, headers: Mapping[str, str], detail: str, *, after_s: float | None = None) -> CommitteeError:
    """The exception a non-2xx response stands for.

    `detail` is the provider's message (see `error_detail`); `after_s` is a delay the
    provider put in the body (Gemini's RetryInfo), used when no header gives one.
    An explicit `x-should-retry: true|false` header wins over the status, as in the
    OpenAI SDK.

    >>> error_for(429, {"retry-after": "2"}, "slow down").after_s
    2.0
    """
    reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    should_retry = headers.get("x-should-retry")
    retry = should_retry == "true" if should_retry in ("true", "false") else is_retryable_status(status)
    if not retry:
        return Permanent(reason, http_status=status)
    header_after_s = retry_after_s(headers)
    return Retryable(
        reason,
        after_s=header_after_s if header_after_s is not None else after_s,
        rate_limited=status == 429,
        overloaded=status in OVERLOAD_STATUSES,
        http_status=status,
    )


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The delay the server asked for, in seconds, or None when it asked for none.

    `retry-after-ms` (OpenAI, exact) first, then `retry-after` as seconds, then as an
    HTTP date (a date in the past means 0). Unparsable values count as absent.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        ms = _finite(value)
        if ms is not None:
            return max(ms / 1000.0, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 section 5.6.7: an HTTP date is always GMT; a server leaving the zone
        # out still means GMT, never our local time.
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - time.time(), 0.0)


def _finite(value: str) -> float | None:
    """`value` as a float, None when it is not a number or not finite ("inf", "nan", "1e999")."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ms|h|m|s)")
_DURATION_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration_s(text: str) -> float | None:
    """OpenAI's reset durations in seconds: "1s" -> 1.0, "6m0s" -> 360.0, "20ms" -> 0.02."""
    # Fast path for the common single-unit forms; this runs on every response.
    if text[:1].isdigit():
        try:
            if text.endswith("ms"):
                value = float(text[:-2]) / 1000.0
                return value if math.isfinite(value) else None
            if text.endswith("s"):
                value = float(text[:-1])
                return value if math.isfinite(value) else None
        except ValueError:
            pass
    plain = _finite(text)
    if plain is not None:
        # Azure's resets are bare seconds ("30"); OpenAI's always carry a unit.
        return plain if plain >= 0 else None
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        end = match.end()
    return total if end and end == len(text) and math.isfinite(total) else None


def _rfc3339_in_s(text: str) -> float | None:
    # Python 3.10's fromisoformat does not take the "Z" suffix Anthropic sends.
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


# A limit above this is no limit we could act on (and int(float("1e400")) overflows).
_MAX_HEADER_INT = 10**12


def _int(value: str | None) -> int | None:
    number = None if value is None else _finite(value)
    if number is None or not 0 <= number <= _MAX_HEADER_INT:
        return None
    return int(number)


def rate_limit_info(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The rate-limit headers of a response, or None when it carries none.

    OpenAI (and most OpenAI-compatible hosts): `x-ratelimit-{limit,remaining,reset}-
    {requests,tokens}` with resets as durations ("6m0s"; Groq's requests ones count per
    day); Azure OpenAI only the remaining ones, resets in seconds
    (https://learn.microsoft.com/en-us/azure/ai-services/openai/quotas-limits); OpenRouter and
    Together `x-ratelimit-{limit,remaining,reset}` for requests. Anthropic: `anthropic-ratelimit-
    {requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` with resets as RFC 3339
    times, "tokens" being the most restrictive token limit in effect. Gemini sends none. Non-finite or absurd numbers
    count as absent.
    """
    get = headers.get
    # Anthropic's own headers first: they alone tell input and output limits apart.
    if any(
        get(f"anthropic-ratelimit-{kind}-limit") is not None
        for kind in ("requests", "tokens", "input-tokens", "output-tokens")
    ):
        return _read_limits(
            lambda field, kind: get(f"anthropic-ratelimit-{kind}-{field}"),
            _rfc3339_in_s,
            # https://docs.anthropic.com/en/api/rate-limits#response-headers
            limit_input_tokens=_int(get("anthropic-ratelimit-input-tokens-limit")),
            limit_output_tokens=_int(get("anthropic-ratelimit-output-tokens-limit")),
        )
    # Azure OpenAI sends the remaining-* pair alone (no limit-*), resets in plain seconds, and -1
    # where a figure does not apply; parse_duration_s takes plain seconds, _int drops the -1.
    if any(get(f"x-ratelimit-{field}-{kind}") is not None for field in ("limit", "remaining") for kind in _KINDS):
        return _read_limits(lambda field, kind: get(f"x-ratelimit-{field}-{kind}"), parse_duration_s)
    if get("x-ratelimit-limit") is not None:
        return _unsuffixed_limits(get)
    return None


_KINDS = ("requests", "tokens")


def _unsuffixed_limits(get: Callable[[str], str | None]) -> RateLimitInfo:
    """`X-RateLimit-Limit/-Remaining/-Reset` (no kind suffix): a request limit, as a per-minute one.

    OpenRouter sends them, on its 429s, with the reset as a Unix time in milliseconds
    (https://openrouter.ai/docs/api-reference/limits). Together's count requests per second,
    resets in seconds from now, with `x-tokenlimit-limit/-remaining` for tokens per second
    (https://docs.together.ai/docs/rate-limits); read as per minute they would throttle a lane
    sixty-fold, so they are scaled to a minute. The reset's magnitude tells the two apart.
    """
    reset = get("x-ratelimit-reset")
    reset_value = _finite(reset) if reset else None
    # A reset given as a point in time (Unix seconds or milliseconds) is OpenRouter's, counted per
    # minute. Without one, per second: a limit read too high costs a few 429s the lane backs off
    # from; one read too low would be adopted for good.
    per_s = reset_value is None or reset_value <= _EPOCH_S
    scale = 60.0 if per_s else 1.0

    def scaled(name: str) -> int | None:
        value = _finite(get(name) or "")
        return _int(str(value * scale)) if value is not None else None

    return RateLimitInfo(
        limit_requests=scaled("x-ratelimit-limit"),
        remaining_requests=scaled("x-ratelimit-remaining"),
        reset_requests_s=_reset_in_s(reset) if reset else None,
        limit_tokens=scaled("x-tokenlimit-limit") if per_s else None,
        remaining_tokens=scaled("x-tokenlimit-remaining") if per_s else None,
    )


# Above this a reset is a Unix time, not seconds from now.
_EPOCH_S = 1e9


def _reset_in_s(text: str) -> float | None:
    """A reset given as seconds from now, a Unix time in seconds, or a Unix time in milliseconds."""
    value = _finite(text)
    if value is None:
        return parse_duration_s(text)
    if value > 1e11:
        value = value / 1000.0 - time.time()
    elif value > _EPOCH_S:
        value -= time.time()
    return max(value, 0.0)


def _read_limits(
    header: Callable[[str, str], str | None], reset_in_s: Callable[[str], float | None], **extra: int | None
) -> RateLimitInfo:
    """The requests and tokens limits one provider's `header(field, kind)` names, resets read by `reset_in_s`."""
    reset_requests = header("reset", "requests")
    reset_tokens = header("reset", "tokens")
    return RateLimitInfo(
        limit_requests=_int(header("limit", "requests")),
        remaining_requests=_int(header("remaining", "requests")),
        limit_tokens=_int(header("limit", "tokens")),
        remaining_tokens=_int(header("remaining", "tokens")),
        reset_requests_s=reset_in_s(reset_requests) if reset_requests else None,
        reset_tokens_s=reset_in_s(reset_tokens) if reset_tokens else None,
        **extra,
    )
