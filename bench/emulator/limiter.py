"""Per-model RPM and TPM limits, enforced the way providers do: token buckets.

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

from bench.emulator.spec import ModelLimits

# Float dust from refills must not turn an exact admission into a 1 ms wait.
_EPSILON = 1e-9


class TokenBucket:
    """One limit dimension: `capacity` units, refilled at `rate_per_s`."""

    __slots__ = ("limit", "rate_per_s", "capacity", "level", "_stamp", "_clock")

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
    """The RPM and TPM buckets of one model (either may be absent)."""

    __slots__ = ("requests", "tokens")

    def __init__(self, limits: ModelLimits, clock: Callable[[], float]):
        self.requests = TokenBucket(limits.rpm, limits.burst_s, 1.0, clock) if limits.rpm else None
        self.tokens = TokenBucket(limits.tpm, limits.burst_s, 0.0, clock) if limits.tpm else None

    def admit(self, cost_tokens: int) -> float:
        """0.0 and charge one request plus `cost_tokens` when both buckets allow it; else the wait in seconds."""
        requests, tokens = self.requests, self.tokens
        wait_s = requests.wait_s(1.0) if requests else 0.0
        if tokens:
            wait_s = max(wait_s, tokens.wait_s(cost_tokens))
        if wait_s > 0.0:
            return wait_s
        if requests:
            requests.take(1.0)
        if tokens:
            tokens.take(cost_tokens)
        return 0.0

    def refund_tokens(self, amount: int) -> None:
        """Give back tokens charged but not used (max_tokens the answer did not need)."""
        if self.tokens and amount > 0:
            self.tokens.give_back(amount)

    def headers(self, anthropic: bool = False) -> dict[str, str]:
        """`x-ratelimit-*` headers (OpenAI format), plus `anthropic-ratelimit-*` ones when asked."""
        out: dict[str, str] = {}
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            limit, remaining, reset_s = str(int(bucket.limit)), str(bucket.remaining()), bucket.reset_s()
            out[f"x-ratelimit-limit-{name}"] = limit
            out[f"x-ratelimit-remaining-{name}"] = remaining
            out[f"x-ratelimit-reset-{name}"] = go_duration(reset_s)
            if anthropic:
                out[f"anthropic-ratelimit-{name}-limit"] = limit
                out[f"anthropic-ratelimit-{name}-remaining"] = remaining
                out[f"anthropic-ratelimit-{name}-reset"] = _rfc3339_after(reset_s)
        return out
