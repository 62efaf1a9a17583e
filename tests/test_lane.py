"""The lane against a scripted fake client: retries, give-up, AIMD, TPM reconciliation, cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import anyio
import anyio.lowlevel
import pytest

from core.calls import ChatRequest, ChatResult, Message, RateLimitInfo
from core.errors import AccountError, Permanent, Retryable, Unusable
from engine.budget import Budget, CallTab
from engine.lane import CallOutcome, Lane, LaneLimits

REQUEST = ChatRequest(model="m", messages=(Message("user", "What is 6 times 7?"),), max_tokens=500)

Behaviour = Callable[[int], "ChatResult | Exception"]


def ok(output_tokens: int = 5, rate_limit: RateLimitInfo | None = None) -> ChatResult:
    return ChatResult(
        text="42",
        input_tokens=20,
        output_tokens=output_tokens,
        finish_reason="stop",
        latency_s=0.01,
        rate_limit=rate_limit,
    )


class FakeClient:
    """Answers attempt n (0-based, over all calls) with `behaviour(n)`; records when each started."""

    def __init__(self, behaviour: Behaviour, *, hold: anyio.Event | None = None):
        self.behaviour = behaviour
        self.hold = hold
        self.started: list[float] = []
        self.entered = 0
        self.all_entered = anyio.Event()
        self.expect_entered = 0

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        n = len(self.started)
        self.started.append(time.monotonic())
        self.entered += 1
        if self.entered == self.expect_entered:
            self.all_entered.set()
        if self.hold is not None:
            await self.hold.wait()
        await anyio.lowlevel.checkpoint()
        answer = self.behaviour(n)
        if isinstance(answer, Exception):
            raise answer
        return answer


FAST = dict(backoff_base_s=0.001, backoff_cap_s=0.002)


@pytest.mark.anyio
async def test_completes_and_counts_tokens() -> None:
    lane = Lane("t", FakeClient(lambda n: ok()), LaneLimits(**FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.attempts == 1 and outcome.retries == 0
    assert outcome.result is not None and outcome.result.text == "42"
    assert (lane.stats.completed, lane.stats.input_tokens, lane.stats.output_tokens) == (1, 20, 5)
    assert lane.stats.in_flight == 0


@pytest.mark.anyio
async def test_retryable_until_max_attempts_then_failed_with_one_line_error() -> None:
    client = FakeClient(lambda n: Retryable("HTTP 503: overloaded\nplease retry"))
    lane = Lane("gpt", client, LaneLimits(max_attempts=4, **FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "failed" and outcome.result is None
    assert (outcome.attempts, outcome.retries, len(client.started)) == (4, 3, 4)
    assert outcome.error is not None and "\n" not in outcome.error
    assert "gpt" in outcome.error and "4 attempts" in outcome.error and "503" in outcome.error
    assert (lane.stats.failed, lane.stats.retries, lane.stats.in_flight) == (1, 3, 0)


@pytest.mark.anyio
async def test_permanent_is_not_retried() -> None:
    client = FakeClient(lambda n: Permanent("HTTP 401: invalid api key"))
    lane = Lane("gpt", client, LaneLimits(**FAST))
    outcome = await lane.call(REQUEST)
    assert (outcome.status, outcome.attempts, len(client.started)) == ("failed", 1, 1)
    assert outcome.error is not None and "401" in outcome.error


@pytest.mark.anyio
async def test_retry_after_beyond_the_cap_is_a_quota_and_fails_now() -> None:
    client = FakeClient(lambda n: Retryable("HTTP 429: daily quota", after_s=3600, rate_limited=True))
    lane = Lane("gpt", client, LaneLimits(max_retry_after_s=60, **FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "failed" and outcome.attempts == 1
    assert outcome.error is not None and "quota" in outcome.error


@pytest.mark.anyio
async def test_retry_after_is_honoured() -> None:
    client = FakeClient(lambda n: Retryable("HTTP 429", after_s=0.2, rate_limited=True) if n == 0 else ok())
    lane = Lane("t", client, LaneLimits(**FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.retries == 1
    assert client.started[1] - client.started[0] >= 0.2
    assert lane.stats.http_429 == 1 and outcome.http_429 == 1


@pytest.mark.anyio
async def test_unexpected_client_error_fails_the_call_not_the_lane() -> None:
    client = FakeClient(lambda n: KeyError("choices") if n == 0 else ok())
    lane = Lane("t", client, LaneLimits(**FAST))
    first, second = await lane.call(REQUEST), await lane.call(REQUEST)
    assert first.status == "failed" and first.error is not None and "KeyError" in first.error
    assert second.status == "completed"


@pytest.mark.anyio
async def test_a_burst_of_429s_is_one_congestion_event() -> None:
    hold = anyio.Event()
    client = FakeClient(lambda n: Retryable("HTTP 429", after_s=0.01, rate_limited=True) if n < 8 else ok(), hold=hold)
    client.expect_entered = 8
    lane = Lane("t", client, LaneLimits(max_in_flight=8, **FAST))
    outcomes = []

    async def one() -> None:
        outcomes.append(await lane.call(REQUEST))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
        await client.all_entered.wait()  # all eight in flight when the limit is hit
        hold.set()
    assert all(o.status == "completed" for o in outcomes)
    assert lane.stats.http_429 == 8
    assert lane.stats.congestion_events == 1
    # Shrunk once to 4, then grown back a little by the eight successes.
    assert 4 <= lane.stats.cap < 8


@pytest.mark.anyio
async def test_repeated_congestion_lowers_the_request_rate_and_successes_restore_it() -> None:
    client = FakeClient(lambda n: Retryable("HTTP 429", after_s=0.001, rate_limited=True) if n < 3 else ok())
    lane = Lane("t", client, LaneLimits(rpm=60_000, max_in_flight=1, **FAST))
    await lane.call(REQUEST)
    assert lane.stats.congestion_events == 3
    assert lane.stats.rpm == pytest.approx(60_000 * 0.8**3, rel=0.01)
    for _ in range(300):  # each success adds back 1/500 of the configured rate
        await lane.call(REQUEST)
    assert lane.stats.rpm == pytest.approx(60_000)


@pytest.mark.anyio
async def test_a_lower_limit_reported_in_headers_is_adopted() -> None:
    info = RateLimitInfo(limit_requests=600, limit_tokens=90_000)
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=info)), LaneLimits(rpm=1200, tpm=200_000, **FAST))
    await lane.call(REQUEST)
    assert (lane.stats.rpm, lane.stats.tpm) == (600, 90_000)
    higher = RateLimitInfo(limit_requests=5000)
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=higher)), LaneLimits(rpm=1200, **FAST))
    await lane.call(REQUEST)
    assert lane.stats.rpm == 1200  # the configured limit stays the ceiling


@pytest.mark.anyio
async def test_tpm_is_refunded_after_short_answers() -> None:
    # A frozen clock: the bucket never refills, so only reconciliation can make room.
    # 60,000 TPM holds 1,000 tokens at burst_s=1 and starts 90 % full; each call is
    # charged about 110 (prompt estimate + max_tokens 100) and really uses 25, so
    # without the refund the ninth call could never start.
    request = ChatRequest(model="m", messages=REQUEST.messages, max_tokens=100)
    lane = Lane("t", FakeClient(lambda n: ok(output_tokens=5)), LaneLimits(tpm=60_000, **FAST), clock=lambda: 0.0)
    tpm = lane._tpm
    assert tpm is not None
    start = tpm.level()
    with anyio.fail_after(5):
        for calls in range(1, 13):
            outcome = await lane.call(request)
            assert outcome.status == "completed"
            assert tpm.level() == pytest.approx(start - 25 * calls)


@pytest.mark.anyio
async def test_a_failed_call_gives_its_tokens_back() -> None:
    lane = Lane("t", FakeClient(lambda n: Permanent("HTTP 400")), LaneLimits(tpm=60_000, **FAST), clock=lambda: 0.0)
    assert lane._tpm is not None
    start = lane._tpm.level()
    with anyio.fail_after(5):
        await lane.call(ChatRequest(model="m", messages=REQUEST.messages, max_tokens=100))
    assert lane._tpm.level() == pytest.approx(start)


@pytest.mark.anyio
async def test_admission_is_first_come_first_served() -> None:
    order: list[str] = []

    class Recorder(FakeClient):
        async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
            order.append(request.messages[0].content)
            return await super().complete(request, timeout_s=timeout_s)

    lane = Lane("t", Recorder(lambda n: ok()), LaneLimits(rpm=60_000, max_in_flight=1, **FAST))
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lane.call, ChatRequest(model="m", messages=(Message("user", str(i)),)))
    assert order == [str(i) for i in range(20)]


@pytest.mark.anyio
async def test_cancellation_propagates_and_releases_every_slot() -> None:
    hold = anyio.Event()  # never set: the provider never answers
    client = FakeClient(lambda n: ok(), hold=hold)
    client.expect_entered = 5
    lane = Lane("t", client, LaneLimits(max_in_flight=5, **FAST))
    cancelled = []

    async def one() -> None:
        try:
            await lane.call(REQUEST)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(8):  # five in flight, three waiting for a slot
                tg.start_soon(one)
            await client.all_entered.wait()
            assert (lane.stats.in_flight, lane.stats.waiting) == (5, 3)
            tg.cancel_scope.cancel()
    assert len(cancelled) == 8
    assert (lane.stats.in_flight, lane.stats.waiting, lane.stats.completed, lane.stats.failed) == (0, 0, 0, 0)
    # The lane is still usable afterwards.
    hold.set()
    assert (await lane.call(REQUEST)).status == "completed"


@pytest.mark.anyio
async def test_a_hung_attempt_times_out_and_is_retried() -> None:
    class Hanging(FakeClient):
        async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
            if not self.started:
                self.started.append(time.monotonic())
                await anyio.sleep_forever()  # ignores its timeout: the lane's scope must end it
            return ok()

    lane = Lane("t", Hanging(lambda n: ok()), LaneLimits(timeout_s=0.05, **FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.retries == 1
    assert lane.stats.in_flight == 0


# --- money per attempt, answers without usable text, account errors, overload -------------

PRICED = dict(cost_usd=lambda i, o, detail: i * 1e-6 + o * 2e-6)


def unusable(kind, output_tokens: int | None = 500) -> Unusable:
    return Unusable(
        kind, f"no text ({kind})", input_tokens=20 if output_tokens is not None else None, output_tokens=output_tokens
    )


@pytest.mark.anyio
async def test_a_truncated_answer_is_billed_not_retried_and_names_max_tokens() -> None:
    client = FakeClient(lambda n: unusable("truncated"))
    lane = Lane("gpt", client, LaneLimits(**FAST))
    tab = CallTab(**PRICED)
    outcome = await lane.call(REQUEST, tab=tab)
    assert (outcome.status, outcome.unusable, outcome.http_status, len(client.started)) == (
        "failed",
        "truncated",
        200,
        1,
    )
    assert outcome.error is not None and "max_tokens" in outcome.error and "'gpt'" in outcome.error
    assert (tab.input_tokens, tab.output_tokens) == (20, 500)
    assert tab.usd == pytest.approx(20e-6 + 1000e-6)


@pytest.mark.anyio
async def test_a_filtered_answer_is_sampled_once_more_and_both_are_billed() -> None:
    client = FakeClient(lambda n: unusable("filtered", 7))
    tab = CallTab(**PRICED)
    outcome = await Lane("t", client, LaneLimits(**FAST)).call(REQUEST, tab=tab)
    assert (outcome.status, outcome.unusable, len(client.started)) == ("failed", "filtered", 2)
    assert (tab.input_tokens, tab.output_tokens) == (40, 14)
    client = FakeClient(lambda n: unusable("refused", 7) if n == 0 else ok())
    tab = CallTab(**PRICED)
    outcome = await Lane("t", client, LaneLimits(**FAST)).call(REQUEST, tab=tab)
    assert outcome.status == "completed" and (tab.input_tokens, tab.output_tokens) == (40, 12)


@pytest.mark.anyio
async def test_usage_missing_is_estimated_not_free() -> None:
    answer = ChatResult(
        text="The answer is 42.",
        input_tokens=0,
        output_tokens=0,
        finish_reason="stop",
        latency_s=0.01,
        usage_reported=False,
    )
    tab = CallTab(**PRICED)
    outcome = await Lane("t", FakeClient(lambda n: answer), LaneLimits(**FAST)).call(REQUEST, tab=tab)
    assert outcome.status == "completed" and tab.usage_estimated
    assert tab.input_tokens > 0 and tab.output_tokens > 0 and tab.usd is not None and tab.usd > 0
    tab = CallTab(**PRICED)
    await Lane("t", FakeClient(lambda n: unusable("truncated", None)), LaneLimits(**FAST)).call(REQUEST, tab=tab)
    assert tab.usage_estimated and tab.output_tokens == REQUEST.max_tokens


@pytest.mark.anyio
async def test_an_abandoned_attempt_is_possibly_billed_at_its_worst_case() -> None:
    client = FakeClient(lambda n: Retryable("timeout after 1s", possibly_billed=True) if n == 0 else ok())
    budget = Budget(None)
    tab = CallTab(budget, worst_usd=0.01, **PRICED)
    outcome = await Lane("t", client, LaneLimits(**FAST)).call(REQUEST, tab=tab)
    assert outcome.status == "completed"
    assert (tab.possibly_attempts, tab.possibly_usd) == (1, 0.01)
    assert budget.possibly_usd == 0.01 and budget.reserved_usd == 0
    assert budget.spent_usd == pytest.approx(tab.usd)


@pytest.mark.anyio
async def test_a_call_cancelled_in_flight_keeps_its_worst_case_as_possibly_billed() -> None:
    client = FakeClient(lambda n: ok(), hold=anyio.Event())
    client.expect_entered = 1
    budget = Budget(1.0)
    tab = CallTab(budget, worst_usd=0.01, **PRICED)
    lane = Lane("t", client, LaneLimits(**FAST))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lane.call, REQUEST)
        tg.start_soon(partial(lane.call, REQUEST, tab=tab))
        await client.all_entered.wait()
        tg.cancel_scope.cancel()
    assert budget.reserved_usd == 0 and budget.possibly_usd == pytest.approx(0.01)


@pytest.mark.anyio
async def test_calls_waiting_in_line_hold_no_money_and_the_cap_refuses_only_what_cannot_fit() -> None:
    # 40 calls wait behind one slot; each worst case is 0.01 and each really costs 0.00104.
    # A reservation taken in line would let 10 through; reserved at admission, all fit in 0.1.
    budget = Budget(0.1)
    lane = Lane("t", FakeClient(lambda n: ok()), LaneLimits(max_in_flight=1, **FAST))
    outcomes: list[CallOutcome] = []

    async def one() -> None:
        outcomes.append(await lane.call(REQUEST, tab=CallTab(budget, worst_usd=0.01, **PRICED)))

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(one)
    assert [o.status for o in outcomes] == ["completed"] * 40
    assert budget.spent_usd == pytest.approx(40 * (20e-6 + 10e-6))
    # Near the cap: the next call is refused unsent, and the cap stays reached.
    budget.spent_usd = 0.095
    client = FakeClient(lambda n: ok())
    outcome = await Lane("t", client, LaneLimits(**FAST)).call(REQUEST, tab=CallTab(budget, worst_usd=0.01))
    assert (outcome.status, outcome.error, client.started, budget.reached) == ("skipped", "budget", [], True)


@pytest.mark.anyio
async def test_a_call_waits_while_in_flight_worst_cases_are_in_the_way() -> None:
    hold = anyio.Event()
    client = FakeClient(lambda n: ok(), hold=hold)
    client.expect_entered = 2
    budget = Budget(0.025)  # room for two worst cases in flight, not three
    lane = Lane("t", client, LaneLimits(max_in_flight=8, **FAST))
    outcomes: list[CallOutcome] = []

    async def one() -> None:
        outcomes.append(await lane.call(REQUEST, tab=CallTab(budget, worst_usd=0.01, **PRICED)))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await client.all_entered.wait()
        assert (lane.stats.in_flight, lane.stats.waiting) == (2, 1)
        hold.set()
    assert [o.status for o in outcomes] == ["completed"] * 3 and not budget.reached


@pytest.mark.anyio
async def test_account_errors_open_the_breaker_and_queued_calls_fail_unsent() -> None:
    hold = anyio.Event()
    client = FakeClient(
        lambda n: AccountError("HTTP 429: insufficient_quota", cause="out of quota", http_status=429), hold=hold
    )
    client.expect_entered = 4
    lane = Lane("gpt", client, LaneLimits(max_in_flight=4, **FAST))
    outcomes: list[CallOutcome] = []

    async def one() -> None:
        outcomes.append(await lane.call(REQUEST))

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(one)
        await client.all_entered.wait()
        hold.set()
    assert len(client.started) == 4  # the four in flight; nothing after the breaker opened
    assert all(o.status == "failed" for o in outcomes) and len(outcomes) == 30
    unsent = [o for o in outcomes if o.attempts == 0]
    assert len(unsent) == 26
    assert all("'gpt'" in o.error and "out of quota" in o.error and "rerun" in o.error for o in outcomes)


@pytest.mark.anyio
async def test_overload_is_retried_beyond_max_attempts_and_slows_the_lane() -> None:
    client = FakeClient(
        lambda n: Retryable("HTTP 529: overloaded", overloaded=True, http_status=529) if n < 8 else ok()
    )
    lane = Lane("t", client, LaneLimits(max_attempts=3, overload_backoff_cap_s=0.002, **FAST))
    outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.attempts == 9
    assert lane.stats.overloaded == 8 and lane.stats.congestion_events >= 1 and lane.stats.cap < 64


@pytest.mark.anyio
async def test_overload_gives_up_after_its_horizon() -> None:
    now = [0.0]

    class Overloaded(FakeClient):
        async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
            now[0] += 100.0
            raise Retryable("HTTP 503: overloaded", overloaded=True, http_status=503)

    lane = Lane(
        "t",
        Overloaded(lambda n: ok()),
        LaneLimits(overload_retry_s=300, overload_backoff_cap_s=0.002, **FAST),
        clock=lambda: now[0],
    )
    outcome = await lane.call(REQUEST)
    assert outcome.status == "failed" and outcome.attempts == 5 and outcome.http_status == 503
    assert outcome.error is not None and "overloaded for over 300 s" in outcome.error


@pytest.mark.anyio
async def test_a_per_day_request_limit_is_not_adopted_as_rpm() -> None:
    # Groq: x-ratelimit-limit-requests is requests per DAY; 1 used, 6 s to refill it.
    groq = RateLimitInfo(
        limit_requests=14_400,
        remaining_requests=14_399,
        reset_requests_s=6.0,
        limit_tokens=6_000,
        remaining_tokens=5_900,
        reset_tokens_s=1.0,
    )
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=groq)), LaneLimits(**FAST))
    await lane.call(REQUEST)
    assert (lane.stats.rpm, lane.stats.tpm) == (None, 6_000)
    long_reset = RateLimitInfo(limit_requests=1_000, reset_requests_s=179.56)
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=long_reset)), LaneLimits(**FAST))
    await lane.call(REQUEST)
    assert lane.stats.rpm is None
    # OpenAI's RPM: 1 of 500 used, 120 ms to refill it = a one-minute window.
    rpm = RateLimitInfo(limit_requests=500, remaining_requests=499, reset_requests_s=0.12)
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=rpm)), LaneLimits(**FAST))
    await lane.call(REQUEST)
    assert lane.stats.rpm == 500


@pytest.mark.anyio
async def test_anthropic_split_token_limits_are_not_read_as_one_tpm() -> None:
    # The "tokens" headers report the tighter of ITPM and OTPM; our one bucket charges both.
    info = RateLimitInfo(limit_tokens=8_000, limit_input_tokens=40_000, limit_output_tokens=8_000)
    lane = Lane("t", FakeClient(lambda n: ok(rate_limit=info)), LaneLimits(**FAST))
    await lane.call(REQUEST)
    assert lane.stats.tpm == 48_000


# --- issue 10: bad usage, overload Retry-After, overload clock, unexpected errors -------------------


def _usage(input_tokens: int, output_tokens: int) -> ChatResult:
    return ChatResult(
        text="The answer is 42.",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason="stop",
        latency_s=0.01,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("usage", [(20, -100_000_000), (10**30, 5), (10**400, 5), (True, 5)])
async def test_implausible_usage_from_a_client_is_estimated_not_billed(usage: tuple[int, int]) -> None:
    # Before: negative money in the tab (cap bypassed), or OverflowError out of Lane.call.
    tab = CallTab(**PRICED)
    lane = Lane("t", FakeClient(lambda n: _usage(*usage)), LaneLimits(tpm=60_000, **FAST), clock=lambda: 0.0)
    outcome = await lane.call(REQUEST, tab=tab)
    assert outcome.status == "completed" and tab.usage_estimated
    assert 0 < tab.input_tokens < 1000 and 0 < tab.output_tokens < 1000 and 0 < tab.usd < 0.01
    tpm = lane._tpm
    assert tpm is not None and tpm.wait_s(1) == 0.0


@pytest.mark.anyio
async def test_a_prompt_far_over_the_estimate_costs_the_tpm_bucket_at_most_one_bucketful() -> None:
    # 10**8 reported tokens against a 60,000 TPM bucket: before, the next admission waited
    # 100,000,000 / 1,000 per s; now at most a bucket's refill (1,000 tokens: one second).
    lane = Lane("t", FakeClient(lambda n: _usage(100_000_000, 5)), LaneLimits(tpm=60_000, **FAST))
    assert (await lane.call(REQUEST)).status == "completed"
    tpm = lane._tpm
    assert tpm is not None and tpm.wait_s(REQUEST.max_tokens) <= 2 * tpm.capacity / tpm.rate_per_s


@pytest.mark.anyio
async def test_an_overload_with_a_long_retry_after_is_retried_not_a_quota() -> None:
    # Before: Retry-After 120 s > max_retry_after_s failed the call at once as a quota.
    slept: list[float] = []
    client = FakeClient(
        lambda n: Retryable("HTTP 503", after_s=120, overloaded=True, http_status=503) if n < 2 else ok()
    )
    lane = Lane("t", client, LaneLimits(max_retry_after_s=60, overload_backoff_cap_s=0.002, **FAST))
    real_sleep = anyio.sleep

    async def sleep(delay_s: float) -> None:
        if delay_s:  # the fake client's own sleep(0) is no wait
            slept.append(delay_s)
        await real_sleep(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("engine.lane.anyio.sleep", sleep)
        outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.attempts == 3
    assert slept == [0.002, 0.002]  # the overload backoff cap, not the 120 s asked


@pytest.mark.anyio
async def test_the_overload_clock_restarts_after_another_answer() -> None:
    # 503 at t=0, then timeouts until t=400, then 503 again: two short overloads, not one
    # of 400 s (before, the second 503 failed the call as "overloaded for over 300 s").
    now = [0.0]
    script = [Retryable("HTTP 503", overloaded=True, http_status=503)]
    script += [Retryable("no answer within 100 s", possibly_billed=True)] * 4
    script += [Retryable("HTTP 503", overloaded=True, http_status=503)]

    class Scripted(FakeClient):
        async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
            n = len(self.started)
            self.started.append(now[0])
            now[0] += 100.0
            if n < len(script):
                raise script[n]
            return ok()

    lane = Lane(
        "t",
        Scripted(lambda n: ok()),
        LaneLimits(overload_retry_s=300, max_attempts=6, overload_backoff_cap_s=0.002, **FAST),
        clock=lambda: now[0],
    )
    outcome = await lane.call(REQUEST)
    assert outcome.status == "completed" and outcome.attempts == 7


@pytest.mark.anyio
async def test_an_unexpected_client_error_is_counted_possibly_billed() -> None:
    tab = CallTab(**PRICED)
    lane = Lane("t", FakeClient(lambda n: KeyError("choices")), LaneLimits(**FAST))
    await lane.call(REQUEST, tab=tab)
    assert tab.possibly_attempts == 1 and lane.stats.possibly_billed == 1


def test_one_refused_attempt_does_not_refuse_a_later_one_that_fits() -> None:
    # Before: once `reached`, every attempt was refused, even a review that fits.
    budget = Budget(1.0, spent_usd=0.90)
    assert budget.reserve(0.2) == "refused" and budget.reached
    assert budget.reserve(0.01) == "reserved" and budget.reached  # new samples still stop
    assert budget.reserve(0.2) == "refused"
