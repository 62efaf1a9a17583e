"""AIMD control: shrink fast on congestion, grow back slowly on success.

A lane holds two of these: its cap on calls in flight, and its request rate (the
configured RPM may be wrong; 429s bring the rate down to what the provider really
allows). Both follow TCP's congestion avoidance: multiply by `factor` once per
congestion EVENT, add `step` per success, stay within [floor, ceiling].

One event, one shrink: when a limit is hit, every call already in flight at that
moment tends to get its 429 too. Those answers report the same congestion, so only a
429 for a call admitted *after* the last shrink counts as a new event. Calls are
numbered at admission (`seq`) to tell them apart.
"""

from __future__ import annotations


class Aimd:
    """A value in [floor, ceiling] under additive-increase / multiplicative-decrease.

    >>> cap = Aimd(64, floor=1, factor=0.5, step=1)
    >>> cap.on_congestion(admitted_seq=0, next_seq=10), cap.value
    (True, 32.0)
    >>> cap.on_congestion(admitted_seq=5, next_seq=12), cap.value  # same event
    (False, 32.0)
    """

    __slots__ = ("_epoch", "ceiling", "events", "factor", "floor", "step", "value")

    def __init__(self, ceiling: float, *, floor: float, factor: float, step: float):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be within (0, 1), got {factor}")
        if not 0 < floor <= ceiling:
            raise ValueError(f"need 0 < floor <= ceiling, got {floor}, {ceiling}")
        self.value = float(ceiling)
        self.ceiling = float(ceiling)
        self.floor = float(floor)
        self.factor = factor
        self.step = step
        self.events = 0
        self._epoch = 0

    def on_congestion(self, admitted_seq: int, next_seq: int) -> bool:
        """Shrink if the congested call was admitted after the last shrink; True if it shrank.

        `admitted_seq` numbers the call that hit the limit; `next_seq` is the number the
        next admitted call will get, so later 429s from calls already in flight are
        recognised as the same event.
        """
        if admitted_seq < self._epoch:
            return False
        self._epoch = next_seq
        self.events += 1
        self.value = max(self.floor, self.value * self.factor)
        return True

    def on_success(self, floor: float | None = None) -> None:
        """Grow by `step` toward the ceiling; `floor` lifts the value to at least that
        (the lane's Little's-law minimum), never above the ceiling."""
        self.value = min(self.ceiling, self.value + self.step)
        if floor is not None and self.value < floor:
            self.value = min(self.ceiling, floor)

    def lower_ceiling(self, ceiling: float) -> None:
        """Cap the value for good at `ceiling` (a provider told us its real limit)."""
        self.ceiling = max(self.floor, min(self.ceiling, ceiling))
        self.value = min(self.value, self.ceiling)
