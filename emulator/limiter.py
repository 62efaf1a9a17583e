"""Per-model RPM, TPM, ITPM/OTPM and per-day limits, enforced the way providers do: token buckets.

Each dimension is a bucket that refills continuously at limit/60 per second and
holds `limit * burst_s / 60`. A request is admitted only when every bucket can pay
for it; a rejected request (a 429) pays nothing. TPM is charged at admission with
input tokens + max_tokens, the way OpenAI counts, and the unused part of max_tokens
is refunded when the answer is done, so over time TPM counts real input + output.

The clock is a parameter, so tests step time by hand:

    now = [0.0]
    limiter = ModelLimiter(ModelLimits(rpm=600), clock=lambda: now[0])
    assert limiter.admit(cost_tokens=1) == 0.0  # admitted, charged
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone

from emulator.spec import ModelLimits

# Float dust from refills must not turn an exact admission into a 1 ms wait.
_EPSILON = 1e-9


class TokenBucket:
    """One limit dimension: `capacity` units, refilled at `rate_per_s`; `limit` is what headers report."""

    __slots__ = ("_clock", "_stamp", "capacity", "level", "limit", "rate_per_s")

    def __init__(self, limit_per_min: float, burst_s: float, min_capacity: float, clock: Callable[[], float]):
        self.limit = limit_per_min
        self.rate_per_s = limit_per_min / 60.0
        self.capacity = max(limit_per_min * burst_s / 60.0, min_capacity)
        self.level = self.capacity
        self._clock = clock
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def wait_s(self, cost: float) -> float:
        """Seconds until `cost` can be paid (0.0: now). A cost above capacity waits for a full bucket."""
        self._refill()
        need = min(cost, self.capacity)
        missing = need - self.level
        return 0.0 if missing <= _EPSILON else missing / self.rate_per_s

    def take(self, cost: float) -> None:
        """Pay `cost`; an oversized cost drives the level negative, delaying whoever comes next."""
        self.level -= cost

    def give_back(self, amount: float) -> None:
        """Refund `amount` (never above capacity)."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)

    def remaining(self) -> int:
        """Whole units available now."""
        self._refill()
        return max(int(self.level + _EPSILON), 0)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill()
        return max(self.capacity - self.level, 0.0) / self.rate_per_s


def go_duration(seconds: float) -> str:
    """A duration the way OpenAI's headers write it: "20ms", "1s", "6m0s", "1h2m3.5s"."""
    whole_ms = math.ceil(seconds * 1000 - 1e-6)
    if whole_ms < 1000:
        return f"{max(whole_ms, 0)}ms"
    seconds = whole_ms / 1000
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return text + f"{secs:.3f}".rstrip("0").rstrip(".") + "s"


def _rfc3339_after(seconds: float) -> str:
    when = datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() + seconds, timezone.utc)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


class ModelLimiter:
    """The buckets of one model: RPM, TPM, Anthropic's ITPM and OTPM, requests per day (each may be absent).

    TPM is charged input + max_tokens at admission, ITPM the input, OTPM max_tokens;
    `refund_tokens` gives the unused max_tokens back to TPM and OTPM unless the
    limits say TPM is never refunded (Azure).
    """

    __slots__ = ("day", "dialect", "input", "output", "refunds", "requests", "tokens")

    def __init__(self, limits: ModelLimits, clock: Callable[[], float]):
        def bucket(per_minute: float | None, burst_s: float, min_capacity: float) -> TokenBucket | None:
            return TokenBucket(per_minute, burst_s, min_capacity, clock) if per_minute else None

        self.requests = bucket(limits.rpm, limits.burst_s, 1.0)
        self.tokens = bucket(limits.tpm, limits.burst_s, 0.0)
        self.input = bucket(limits.itpm, limits.burst_s, 0.0)
        self.output = bucket(limits.otpm, limits.burst_s, 0.0)
        # A day's worth of requests, refilled continuously: Groq's reset-requests is the
        # time until the day's bucket is full again (e.g. "2m59.56s").
        self.day = bucket(limits.rpd / _MINUTES_PER_DAY, 60.0 * _MINUTES_PER_DAY, 1.0) if limits.rpd else None
        if self.day is not None and limits.rpd:
            self.day.limit = limits.rpd  # what the headers report: requests per day
        self.refunds = limits.refund_unused_tokens
        self.dialect = limits.header_dialect

    def _charges(self, cost_tokens: int, input_tokens: int) -> tuple[tuple[TokenBucket | None, float], ...]:
        return (
            (self.requests, 1.0),
            (self.day, 1.0),
            (self.tokens, cost_tokens),
            (self.input, input_tokens),
            (self.output, cost_tokens - input_tokens),
        )

    def admit(self, cost_tokens: int, input_tokens: int = 0) -> float:
        """0.0 and charge one request plus `cost_tokens` (input + max_tokens) when every bucket allows it;
        else the wait in seconds. `input_tokens` of the cost go to ITPM, the rest to OTPM."""
        charges = self._charges(cost_tokens, input_tokens)
        wait_s = 0.0
        for bucket, cost in charges:
            if bucket is not None:
                wait_s = max(wait_s, bucket.wait_s(cost))
        if wait_s > 0.0:
            return wait_s
        for bucket, cost in charges:
            if bucket is not None:
                bucket.take(cost)
        return 0.0

    def refund_tokens(self, amount: int) -> None:
        """Give back output tokens charged but not used (max_tokens the answer did not need)."""
        if amount > 0 and self.refunds:
            for bucket in (self.tokens, self.output):
                if bucket is not None:
                    bucket.give_back(amount)

    def headers(self, anthropic: bool = False) -> dict[str, str]:
        """`x-ratelimit-*` headers (OpenAI format, Groq's with RPD in the requests ones, Azure's,
        or Together's per-second ones), plus `anthropic-ratelimit-*` ones when asked."""
        if self.dialect == "together":
            return self._together_headers()
        out: dict[str, str] = {}
        requests = self.day if self.dialect == "groq" else self.requests
        for name, bucket in (("requests", requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            limit, remaining, reset_s = _limit_text(bucket), str(bucket.remaining()), bucket.reset_s()
            out[f"x-ratelimit-remaining-{name}"] = remaining
            if self.dialect == "azure":
                out[f"x-ratelimit-reset-{name}"] = str(math.ceil(reset_s))
                continue
            out[f"x-ratelimit-limit-{name}"] = limit
            out[f"x-ratelimit-reset-{name}"] = go_duration(reset_s)
        if anthropic:
            # https://docs.anthropic.com/en/api/rate-limits#response-headers: resets are RFC 3339
            # times; the tokens-* ones describe the most restrictive token limit in effect.
            named = (("requests", self.requests), ("input-tokens", self.input), ("output-tokens", self.output))
            for name, bucket in named:
                if bucket is not None:
                    _anthropic_headers(out, name, bucket)
            token_buckets = [b for b in (self.tokens, self.input, self.output) if b is not None]
            if token_buckets:
                _anthropic_headers(out, "tokens", min(token_buckets, key=lambda b: b.remaining()))
        return out

    def _together_headers(self) -> dict[str, str]:
        """Together's per-second figures: the limit over 60, what the next second can still take."""
        out: dict[str, str] = {}
        for prefix, bucket in (("x-ratelimit", self.requests), ("x-tokenlimit", self.tokens)):
            if bucket is None:
                continue
            per_s = bucket.limit / 60.0
            out[f"{prefix}-limit"] = f"{per_s:g}"
            out[f"{prefix}-remaining"] = f"{min(bucket.remaining(), per_s):g}"
            if prefix == "x-ratelimit":
                out["x-ratelimit-reset"] = f"{bucket.reset_s():.3g}"
        return out


# A per-day bucket is a per-minute one with a day's rate and a day's burst.
_MINUTES_PER_DAY = 24 * 60


def _limit_text(bucket: TokenBucket) -> str:
    return str(int(bucket.limit))


def _anthropic_headers(out: dict[str, str], name: str, bucket: TokenBucket) -> None:
    out[f"anthropic-ratelimit-{name}-limit"] = _limit_text(bucket)
    out[f"anthropic-ratelimit-{name}-remaining"] = str(bucket.remaining())
    out[f"anthropic-ratelimit-{name}-reset"] = _rfc3339_after(bucket.reset_s())
