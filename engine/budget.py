"""The spending cap: no new call starts once spent plus in-flight estimates reach `max_usd`.

A call reserves its worst-case cost (estimated prompt tokens + max_tokens at the
teacher's prices) before it is sent and settles to the billed cost when it ends,
so calls in flight can never carry spending past the cap.
"""

from __future__ import annotations

import math


class Budget:
    """Tracks spent and reserved USD against an optional cap."""

    __slots__ = ("max_usd", "spent_usd", "reserved_usd", "reached")

    def __init__(self, max_usd: float | None, *, spent_usd: float = 0.0):
        self.max_usd = max_usd
        # Money spent by earlier runs of the same out_dir counts against the cap too.
        self.spent_usd = spent_usd
        self.reserved_usd = 0.0
        self.reached = False

    def reserve(self, usd: float) -> bool:
        """Reserve `usd` for a call about to start; False (and `reached`) if that would pass the cap."""
        if self.max_usd is None:
            return True
        if self.reached or self.spent_usd + self.reserved_usd + usd > self.max_usd:
            self.reached = True
            return False
        self.reserved_usd += usd
        return True

    def settle(self, reserved_usd: float, spent_usd: float | None) -> None:
        """Release a reservation and book what the call really cost (None: unknown price, booked as 0)."""
        if self.max_usd is not None:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        if spent_usd is not None and not math.isnan(spent_usd):
            self.spent_usd += spent_usd
