"""The spending cap, and each call's tab: money counted per attempt, at the moment it is sent.

A call reserves its worst case (estimated prompt tokens + max_tokens at the teacher's
prices) when its lane admits an attempt, just before sending it, never while it
waits in line: reservations of queued calls would otherwise stop a run with
hundreds of samples in flight far below its cap. Each attempt then settles:
- billed: to the cost of the usage the provider reported (answers without usable
  text included);
- possibly billed: an attempt sent and abandoned (timeout, reset, cancelled) keeps
  its worst case, since the provider may have run the model to completion;
- not billed: an error answer releases its reservation.

`max_usd` refuses an attempt only when spent + possibly billed + in-flight worst
cases + its own worst case would pass the cap. When only the in-flight worst cases
are in the way, the attempt waits for them to settle (most settle far below their
worst case); when even an idle run could not afford it, that attempt is refused and
the cap is marked `reached` (no new samples start). Each attempt is decided on its
own worst case: a smaller one that still fits (a review of a rationale already
bought) is sent, or the money spent on what it reviews is wasted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import anyio
import msgspec

from core.calls import NO_DETAIL, UsageDetail
from store.calls import CallRow, CallSlot

Verdict = Literal["reserved", "wait", "refused"]
# USD of (input tokens, output tokens, their reasoning and cached parts); None: price unknown.
CostFn = Callable[[int, int, UsageDetail], "float | None"]


class Budget:
    """Spent, possibly billed and reserved USD against an optional cap."""

    __slots__ = ("_changed", "_holders", "max_usd", "possibly_usd", "reached", "reserved_usd", "spent_usd")

    def __init__(self, max_usd: float | None, *, spent_usd: float = 0.0, possibly_usd: float = 0.0):
        self.max_usd = max_usd
        # Money spent (or possibly billed) by earlier runs of the same out_dir counts too.
        self.spent_usd = spent_usd
        self.possibly_usd = possibly_usd
        self.reserved_usd = 0.0
        self.reached = False
        # Reservations not settled yet: at zero, `reserved_usd` is exactly 0 again (no
        # float residue left to make an attempt wait for a settlement that never comes).
        self._holders = 0
        self._changed: anyio.Event | None = None

    def reserve(self, usd: float) -> Verdict:
        """Reserve `usd` for an attempt about to be sent.

        `wait`: it fits once calls in flight settle (await `changed()`, then ask
        again); `refused`: it can never fit, and the cap is `reached` for good (new
        samples stop). A later, smaller attempt is still judged on its own worst case.
        """
        if self.max_usd is None:
            return "reserved"
        committed = self.spent_usd + self.possibly_usd + usd
        if committed > self.max_usd:
            self.reached = True
            return "refused"
        if committed + self.reserved_usd > self.max_usd and self._holders:
            return "wait"
        self.reserved_usd += usd
        self._holders += 1
        return "reserved"

    def hold(self, usd: float) -> None:
        """Reserve `usd` for an attempt already sent (a batch an earlier run submitted): never refused,
        since it is out of our hands; settled like any reservation."""
        if self.max_usd is None:
            return
        self.reserved_usd += usd
        self._holders += 1

    async def changed(self) -> None:
        """Wait until a reservation is settled or the cap is reached."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def settle(self, reserved_usd: float, spent_usd: float | None) -> None:
        """Release a reservation and book what the attempt cost (None: unknown price, booked as 0)."""
        self._release(reserved_usd)
        if spent_usd is not None and not math.isnan(spent_usd):
            self.spent_usd += spent_usd
        self._notify()

    def book(self, spent_usd: float) -> None:
        """Book money spent without a reservation of this run (a batch an earlier run submitted)."""
        self.spent_usd += spent_usd
        self._notify()

    def abandon(self, reserved_usd: float) -> None:
        """Book a reservation as possibly billed: the attempt was sent and its answer never seen."""
        self._release(reserved_usd)
        self.possibly_usd += reserved_usd
        self._notify()

    def _release(self, reserved_usd: float) -> None:
        if self.max_usd is None:
            return
        self._holders -= 1
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd) if self._holders else 0.0

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class CallTab:
    """One call's account over all its attempts: reserved, billed, possibly billed.

    The lane drives it (`reserve` at admission, then one of `billed`, `abandoned`,
    `released` per attempt); the teacher reads the sums into the call's store row,
    whatever the outcome, cancellation included.
    """

    __slots__ = (
        "_held",
        "budget",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "possibly_attempts",
        "possibly_usd",
        "reasoning_tokens",
        "reasoning_usd",
        "usage_estimated",
        "usd",
        "worst_usd",
    )

    def __init__(self, budget: Budget | None = None, *, worst_usd: float = 0.0, cost_usd: CostFn | None = None):
        self.budget = budget
        self.worst_usd = worst_usd
        self.cost_usd = cost_usd
        self.input_tokens = 0
        self.output_tokens = 0
        # Parts of the tokens above, priced or shown apart (core.calls.UsageDetail).
        self.reasoning_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_usd = 0.0
        # None once any billed attempt had no known price.
        self.usd: float | None = 0.0
        self.possibly_usd = 0.0
        self.possibly_attempts = 0
        self.usage_estimated = False
        self._held = 0.0

    def reserve(self) -> Verdict:
        """Reserve this call's worst case for one attempt (see `Budget.reserve`)."""
        verdict = "reserved" if self.budget is None else self.budget.reserve(self.worst_usd)
        if verdict == "reserved":
            self._held = self.worst_usd
        return verdict

    def billed(
        self, input_tokens: int, output_tokens: int, *, detail: UsageDetail = NO_DETAIL, estimated: bool = False
    ) -> None:
        """The attempt was answered and billed for this usage (`estimated`: the provider reported none)."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.reasoning_tokens += detail.reasoning_tokens
        self.cache_read_tokens += detail.cache_read_tokens
        self.cache_write_tokens += detail.cache_write_tokens
        self.usage_estimated |= estimated
        cost = self.cost_usd(input_tokens, output_tokens, detail) if self.cost_usd is not None else 0.0
        if detail.reasoning_tokens and self.cost_usd is not None:
            self.reasoning_usd += self.cost_usd(0, detail.reasoning_tokens, NO_DETAIL) or 0.0
        self.usd = None if self.usd is None or cost is None else self.usd + cost
        self._settle(cost)

    def abandoned(self) -> None:
        """The attempt was sent and never answered: possibly billed at its worst case."""
        self.possibly_attempts += 1
        self.possibly_usd += self.worst_usd
        held, self._held = self._held, 0.0
        if self.budget is not None:
            self.budget.abandon(held)

    def released(self) -> None:
        """The attempt was answered with an error: nothing billed."""
        self._settle(0.0)

    def _settle(self, cost: float | None) -> None:
        held, self._held = self._held, 0.0
        if self.budget is not None:
            self.budget.settle(held, cost)


def billed_row(slot: CallSlot, tab: CallTab, **fields) -> CallRow:
    """The store row of a call: `fields` plus everything its attempts billed or may have billed."""
    return CallRow(
        **msgspec.structs.asdict(slot),
        **fields,
        input_tokens=tab.input_tokens,
        output_tokens=tab.output_tokens,
        usd=tab.usd,
        possibly_usd=tab.possibly_usd,
        possibly_attempts=tab.possibly_attempts,
        usage_estimated=tab.usage_estimated,
        reasoning_tokens=tab.reasoning_tokens,
        cache_read_tokens=tab.cache_read_tokens,
        cache_write_tokens=tab.cache_write_tokens,
        reasoning_usd=tab.reasoning_usd,
    )
