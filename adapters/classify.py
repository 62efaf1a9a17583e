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

import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

import msgspec

from adapters.base import RateLimitInfo
from engine.errors import CommitteeError, Permanent, Retryable

# Provider text in an exception is cut here: enough to read, never a whole page.
MAX_DETAIL_CHARS = 200


class _ErrorDetail(msgspec.Struct):
    # OpenAI: message/type/code; Anthropic: type/message; Gemini: code/message/status.
    message: str = ""
    type: str | None = None
    status: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    # Some OpenAI-compatible servers (older vLLM, llama.cpp) answer {"message": ...}.
    message: str | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def error_detail(body: bytes) -> str:
    """The provider's error message from an error body, or a short description of the body."""
    try:
        parsed = _error_decoder.decode(body)
    except msgspec.DecodeError:
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


def malformed(body: bytes, exc: msgspec.DecodeError) -> Retryable:
    """The Retryable for a 2xx whose body we cannot read (garbled, truncated, HTML, wrong shape)."""
    if isinstance(exc, msgspec.ValidationError):
        return Retryable(shorten(f"unexpected response shape: {exc}"))
    return Retryable(f"unreadable response: {describe_body(body)}")


def decode_success(
    status: int, headers: Mapping[str, str], body: bytes, decoder: msgspec.json.Decoder, *,
    after_s: float | None = None,
):
    """The decoded body of a 2xx; else the classified error for the status, or Retryable for a garbled body.

    `after_s` is a provider-specific retry delay found in an error body (Gemini's RetryInfo).
    """
    if not 200 <= status < 300:
        raise error_for(status, headers, error_detail(body), after_s=after_s)
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise malformed(body, exc) from None


def shorten(text: str) -> str:
    """`text` on one line, at most MAX_DETAIL_CHARS characters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and every 5xx (529 overloaded included) are worth retrying."""
    return status in (408, 409, 429) or status >= 500


def error_for(
    status: int, headers: Mapping[str, str], detail: str, *, after_s: float | None = None
) -> CommitteeError:
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
        return Permanent(reason)
    header_after_s = retry_after_s(headers)
    return Retryable(
        reason,
        after_s=header_after_s if header_after_s is not None else after_s,
        rate_limited=status == 429,
    )


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The delay the server asked for, in seconds, or None when it asked for none.

    `retry-after-ms` (OpenAI, exact) first, then `retry-after` as seconds, then as an
    HTTP date (a date in the past means 0). Unparsable values count as absent.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ms|h|m|s)")
_DURATION_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration_s(text: str) -> float | None:
    """OpenAI's reset durations in seconds: "1s" -> 1.0, "6m0s" -> 360.0, "20ms" -> 0.02."""
    # Fast path for the common single-unit forms; this runs on every response.
    if text[:1].isdigit():
        try:
            if text.endswith("ms"):
                return float(text[:-2]) / 1000.0
            if text.endswith("s"):
                return float(text[:-1])
        except ValueError:
            pass
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        end = match.end()
    return total if end and end == len(text) else None


def _rfc3339_in_s(text: str) -> float | None:
    # Python 3.10's fromisoformat does not take the "Z" suffix Anthropic sends.
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def rate_limit_info(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The rate-limit headers of a response, or None when it carries none.

    OpenAI (and most OpenAI-compatible hosts): `x-ratelimit-{limit,remaining,reset}-
    {requests,tokens}` with resets as durations ("6m0s"). Anthropic:
    `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` with resets as
    RFC 3339 times. Gemini sends none.
    """
    get = headers.get
    if get("x-ratelimit-limit-requests") is not None or get("x-ratelimit-limit-tokens") is not None:
        reset_requests = get("x-ratelimit-reset-requests")
        reset_tokens = get("x-ratelimit-reset-tokens")
        return RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit-requests")),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_requests_s=parse_duration_s(reset_requests) if reset_requests else None,
            reset_tokens_s=parse_duration_s(reset_tokens) if reset_tokens else None,
        )
    if get("anthropic-ratelimit-requests-limit") is not None or get("anthropic-ratelimit-tokens-limit") is not None:
        reset_requests = get("anthropic-ratelimit-requests-reset")
        reset_tokens = get("anthropic-ratelimit-tokens-reset")
        return RateLimitInfo(
            limit_requests=_int(get("anthropic-ratelimit-requests-limit")),
            remaining_requests=_int(get("anthropic-ratelimit-requests-remaining")),
            limit_tokens=_int(get("anthropic-ratelimit-tokens-limit")),
            remaining_tokens=_int(get("anthropic-ratelimit-tokens-remaining")),
            reset_requests_s=_rfc3339_in_s(reset_requests) if reset_requests else None,
            reset_tokens_s=_rfc3339_in_s(reset_tokens) if reset_tokens else None,
        )
    return None
