"""A token bucket for one rate-limit dimension (requests or tokens per minute).

Plain arithmetic on an injectable clock, no waiting: the lane decides how to wait
(FIFO, together with its other limits), and tests step the clock by hand.

The bucket refills continuously at `per_minute / 60` per second up to a capacity of
`burst_s` seconds' worth, which is how providers (and our emulator) enforce limits.
Unlike aiolimiter's leaky bucket it can be refunded and charged after the fact, which
TPM needs: a call is charged `prompt + max_tokens` when admitted and reconciled with
the usage the provider reports when it answers.

>>> bucket = TokenBucket(per_minute=600, burst_s=1.0, clock=lambda: 0.0)
>>> bucket.wait_s(1)
0.0
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Continuous-refill bucket; the level may go negative (debt) after a late charge."""

    __slots__ = ("_clock", "_level", "_stamp", "burst_s", "capacity", "per_minute", "rate_per_s")

    def __init__(
        self,
        per_minute: float,
        *,
        burst_s: float = 1.0,
        start_fill: float = 1.0,
        clock: Clock = time.monotonic,
    ):
        if per_minute <= 0 or burst_s <= 0:
            raise ValueError(f"per_minute and burst_s must be > 0, got {per_minute}, {burst_s}")
        self.burst_s = burst_s
        self._set_rate(per_minute)
        self._clock = clock
        self._stamp = clock()
        self._level = self.capacity * start_fill

    def _set_rate(self, per_minute: float) -> None:
        # Derived values are stored, not computed per use: the lane reads them on every call.
        self.per_minute = float(per_minute)
        self.rate_per_s = self.per_minute / 60.0
        # Never below 1, so a single request always fits a very low RPM.
        self.capacity = max(1.0, self.rate_per_s * self.burst_s)

    def level(self) -> float:
        """Tokens available now (negative while in debt)."""
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        if now > self._stamp:
            level = self._level + (now - self._stamp) * self.rate_per_s
            self._level = level if level < self.capacity else self.capacity
            self._stamp = now

    def clamp(self, amount: float) -> float:
        """`amount` limited to the capacity: a charge above it could never be admitted."""
        return min(amount, self.capacity)

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` (clamped to the capacity) is available; 0 if it is now."""
        self._refill()
        missing = self.clamp(amount) - self._level
        return 0.0 if missing <= 0 else missing / self.rate_per_s

    def take(self, amount: float) -> None:
        """Remove `amount`, going into debt if there is not enough (callers check `wait_s` first)."""
        self._refill()
        self._level -= amount

    def refund(self, amount: float) -> None:
        """Give back `amount` (a charge that turned out too high), never above capacity."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def drain(self, for_s: float = 0.0) -> None:
        """Empty the bucket and keep it empty for `for_s` more seconds (the provider just
        told us its side is empty until then): no burst of accrued tokens afterwards."""
        self._refill()
        self._level = min(self._level, -for_s * self.rate_per_s)

    def set_rate(self, per_minute: float) -> None:
        """Change the limit from now on; tokens accrued so far stay at the old rate."""
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute}")
        self._refill()
        self._set_rate(per_minute)
        self._level = min(self._level, self.capacity)
