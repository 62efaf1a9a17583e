"""The spending cap's verdicts (reserve, wait, refuse), settling and abandoning, and the cap under concurrency."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from engine.budget import Budget


def test_without_a_cap_every_attempt_is_reserved_and_costs_are_still_booked() -> None:
    budget = Budget(None)
    assert all(budget.reserve(1e6) == "reserved" for _ in range(3))
    budget.settle(1e6, 0.25)
    budget.abandon(1e6)
    assert (budget.spent_usd, budget.possibly_usd, budget.reached) == (0.25, 1e6, False)


def test_reserve_waits_on_worst_cases_in_flight_and_settling_makes_room() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.4) == "reserved" and budget.reserve(0.4) == "reserved"
    # 0.8 reserved + 0.4 passes the cap, but only because of attempts in flight: wait, not refuse.
    assert budget.reserve(0.4) == "wait" and not budget.reached
    budget.settle(0.4, 0.1)  # billed far below its worst case
    assert (budget.spent_usd, budget.reserved_usd) == (pytest.approx(0.1), pytest.approx(0.4))
    assert budget.reserve(0.4) == "reserved"
    budget.settle(0.4, None)  # an unknown price books nothing
    budget.settle(0.4, 0.2)
    assert (budget.spent_usd, budget.reserved_usd) == (pytest.approx(0.3), 0.0)


def test_refused_only_when_even_an_idle_run_could_not_pay_and_the_cap_stays_reached() -> None:
    budget = Budget(1.0, spent_usd=0.5, possibly_usd=0.3)  # what earlier runs of the out_dir spent
    assert budget.reserve(0.3) == "refused" and budget.reached
    # A smaller attempt (a review of a rationale already bought) is judged on its own worst case.
    assert budget.reserve(0.2) == "reserved" and budget.reached
    assert budget.reserve(0.01) == "wait"


def test_an_abandoned_attempt_counts_as_possibly_billed_against_the_cap() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.6) == "reserved"
    budget.abandon(0.6)
    assert (budget.possibly_usd, budget.reserved_usd) == (0.6, 0.0)
    assert budget.reserve(0.6) == "refused"


@pytest.mark.anyio
async def test_changed_wakes_a_waiting_attempt_when_a_reservation_settles() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.9) == "reserved"
    verdicts: list[str] = []

    async def attempt() -> None:
        while (verdict := budget.reserve(0.5)) == "wait":
            verdicts.append(verdict)
            await budget.changed()
        verdicts.append(verdict)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt)
        await anyio.wait_all_tasks_blocked()
        assert verdicts == ["wait"]
        budget.settle(0.9, 0.3)
    assert verdicts == ["wait", "reserved"]


@pytest.mark.anyio
async def test_many_concurrent_attempts_never_pass_the_cap() -> None:
    cap = 1.0
    budget = Budget(cap)
    rng = random.Random(11)
    outcomes: list[str] = []
    waits = 0

    def within_cap() -> None:
        assert budget.spent_usd + budget.possibly_usd + budget.reserved_usd <= cap + 1e-12

    async def attempt(worst_usd: float, fate: str, billed_share: float) -> None:
        nonlocal waits
        while (verdict := budget.reserve(worst_usd)) == "wait":
            waits += 1
            await budget.changed()
        within_cap()
        outcomes.append(verdict)
        if verdict == "refused":
            return
        await anyio.lowlevel.checkpoint()  # in flight while the others reserve
        if fate == "billed":
            budget.settle(worst_usd, worst_usd * billed_share)
        elif fate == "abandoned":
            budget.abandon(worst_usd)
        else:  # an error answer: nothing billed
            budget.settle(worst_usd, 0.0)
        within_cap()

    async with anyio.create_task_group() as tg:
        for _ in range(300):
            fate = rng.choices(["billed", "abandoned", "error"], weights=[8, 1, 1])[0]
            tg.start_soon(attempt, rng.uniform(0.001, 0.05), fate, rng.uniform(0.05, 1.0))
    assert len(outcomes) == 300  # every attempt got its verdict: no waiter was left behind
    # All three verdicts happened: the run went right up to the cap.
    assert waits > 0 and "reserved" in outcomes and "refused" in outcomes and budget.reached
    assert budget.reserved_usd == 0.0
    assert budget.spent_usd + budget.possibly_usd <= cap
