"""One teacher's lane: admission at its limits, adaptive concurrency, retries.

A lane wraps one client (provider + model + key) and is the only way the engine
calls it: `await lane.call(request, tab=tab) -> CallOutcome`. Every call ends
`completed`, `failed` (after `max_attempts`, at once on a `Permanent` error, after a
few billed answers without usable text, or unsent once the teacher's circuit
breaker opened on account errors) or `skipped` (the spending cap refused it);
cancellation propagates and the in-flight count is released in `finally`. The
call's `CallTab` (engine/budget.py) learns every attempt's money: reserved at
admission, then billed, possibly billed (sent, never answered) or released.

Admission is FIFO: a call waits in line (an anyio Lock hands over in arrival order)
and the head of the line waits until all of these hold, then takes them at once:
- a free slot under the adaptive in-flight cap (AIMD, engine/concurrency.py);
- no lane-wide pause (set by a 429 to the server's retry-after);
- one request from the RPM bucket and `estimated prompt + max_tokens` from the TPM
  bucket (engine/limiter.py), the way OpenAI counts; the TPM charge is reconciled with
  the provider-reported usage when the answer arrives, so a lane whose answers are
  much shorter than max_tokens still runs at its TPM;
- the call's worst case reserved against the spending cap (it waits while other
  calls' in-flight reservations are in the way, and is skipped once the cap is reached).

The configured limits may be wrong. Two things bring a lane down to the real ones
without a retry storm: a rate-limit header announcing a lower limit lowers the bucket
for good, and each congestion event (a burst of 429s) multiplies the request rate (and the
in-flight cap) down, both growing back additively on successes. Overload (5xx,
Anthropic 529) shrinks the in-flight cap the same way but leaves the rate alone,
and is retried over minutes, not attempts.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Literal, Protocol

import anyio
import msgspec

from core.calls import NO_DETAIL, ChatRequest, ChatResult, plausible_tokens
from core.config import TeacherSection
from core.errors import (
    AccountError,
    CommitteeError,
    Permanent,
    Retryable,
    Unusable,
    UnusableKind,
)
from engine.backoff import retry_delay_s
from engine.breaker import Breaker
from engine.budget import CallTab
from engine.concurrency import Aimd
from engine.limiter import Clock, TokenBucket
from engine.tokens import estimate_request_tokens, estimate_tokens

log = logging.getLogger(__name__)

# Our buckets start less full than the provider's: after the initial burst both run
# near empty and requests reach the provider slightly bunched by network jitter, so
# slack on its side turns would-be 429s into none. The slack lasts (both refill at
# the same rate), so the TPM bucket keeps more: in flight, each call holds its unused
# max_tokens there, and a smaller effective bucket would throttle the lane below TPM.
_START_FILL_REQUESTS = 0.5
_START_FILL_TOKENS = 0.9
# A congestion event multiplies the request rate by this and the in-flight cap by
# _CAP_FACTOR; successes add back a small step (rate: 1/500 of the configured limit).
_RATE_FACTOR = 0.8
_RATE_STEP_FRACTION = 1 / 500
_CAP_FACTOR = 0.5
_CAP_STEP = 0.1
# A lane-wide pause after a 429 never lasts longer than this, whatever it says.
_MAX_PAUSE_S = 5.0
# Our own timeout scope only backs up the client's, which should fire first.
_TIMEOUT_GRACE_S = 1.0
# Billed answers without usable text a call may get before it is recorded failed.
# Each is paid for, so none is retried blindly: a filtered, refused or empty answer
# is sampled once more (teachers sample at temperature > 0 and the next answer often
# differs); a truncated one never, since the same max_tokens truncates the same way
# and only raising it helps.
_UNUSABLE_ANSWERS = {"filtered": 2, "refused": 2, "empty": 2, "truncated": 1}
# Overload answers in a row (no success between) that make a congestion event.
_OVERLOADS_TO_SHRINK = 2
# A reported limit is per minute only if its window (the time to refill what was used)
# is about a minute: Groq reports requests per DAY in x-ratelimit-limit-requests.
_PER_MINUTE_WINDOW_S = 90.0


class Completer(Protocol):
    """What a lane needs of a client: one attempt, classified errors."""

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult: ...


class LaneLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A teacher's limits and retry policy. `rpm`/`tpm` None means no limit known."""

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int = 64
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    # Seconds of traffic a bucket holds: providers allow about a second's burst.
    burst_s: float = 1.0
    # A Retry-After longer than this is a quota, not a burst: the call fails for this
    # run (a resumed run retries it) and the lane's other calls keep going. Overload
    # answers are the exception: their Retry-After is capped at `overload_backoff_cap_s`.
    max_retry_after_s: float = 60.0
    # Overload (5xx, Anthropic 529) passes in seconds to minutes: a call retries it for
    # this long, backing off up to `overload_backoff_cap_s`, outside `max_attempts`.
    overload_retry_s: float = 300.0
    overload_backoff_cap_s: float = 30.0
    # Account errors (quota, credit, key) in a row that open the teacher's breaker.
    account_errors_to_open: int = 3

    def __post_init__(self) -> None:
        for key in ("rpm", "tpm"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"`{key}` must be > 0, got {value}")
        if self.max_in_flight < 1 or self.max_attempts < 1:
            raise ValueError("`max_in_flight` and `max_attempts` must be >= 1")
        if self.timeout_s <= 0 or self.burst_s <= 0:
            raise ValueError("`timeout_s` and `burst_s` must be > 0")


def lane_limits(teacher: TeacherSection) -> LaneLimits:
    """The lane limits a teacher's config section asks for."""
    return LaneLimits(
        rpm=teacher.rpm,
        tpm=teacher.tpm,
        max_in_flight=teacher.max_in_flight,
        timeout_s=teacher.timeout_s,
        max_attempts=teacher.max_attempts,
    )


class CallOutcome(msgspec.Struct, kw_only=True):
    """How one call ended. `error` is one line, set unless `status == "completed"`.

    `skipped`: the spending cap refused to send it (`error == "budget"`). `unusable`
    says why the last answer, billed, had no usable text; `http_status` is the raw
    status of the last response (None when none came back).
    """

    status: Literal["completed", "failed", "skipped"]
    result: ChatResult | None = None
    attempts: int
    retries: int
    http_429: int = 0
    error: str | None = None
    elapsed_s: float = 0.0
    unusable: UnusableKind | None = None
    http_status: int | None = None


class LaneStats(msgspec.Struct, kw_only=True):
    """Live counters for progress displays and benchmarks; read, never written, outside the lane."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0
    in_flight: int = 0
    cap: float = 0.0
    rpm: float | None = None
    tpm: float | None = None
    http_429: int = 0
    overloaded: int = 0
    congestion_events: int = 0
    retries: int = 0
    unusable: int = 0
    possibly_billed: int = 0
    account_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    # Our prompt estimate for the completed calls, to set against `input_tokens`.
    estimated_input_tokens: int = 0


class Lane:
    """Admission, adaptive concurrency and retries for one teacher.

    Build it inside the running event loop (its lock belongs to one loop):

    >>> async with ChatClient("openai", api_key=key) as client:  # doctest: +SKIP
    ...     lane = Lane("gpt", client, LaneLimits(rpm=500, tpm=200_000))
    ...     outcome = await lane.call(request)
    """

    def __init__(
        self,
        name: str,
        client: Completer,
        limits: LaneLimits,
        *,
        estimator: Callable[[ChatRequest], int] = estimate_request_tokens,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.name = name
        self.limits = limits
        self._client = client
        self._estimate = estimator
        self._clock = clock
        self._rng = rng or random.Random()
        self._fifo = anyio.Lock(fast_acquire=True)
        self._call_ended: anyio.Event | None = None
        self._in_flight = 0
        self._next_seq = 0
        self._pause_until = 0.0
        self._latency_s = 0.0
        self._cap = Aimd(limits.max_in_flight, floor=1, factor=_CAP_FACTOR, step=_CAP_STEP)
        self.breaker = Breaker(limits.account_errors_to_open)
        self._overloads_in_a_row = 0
        self._rpm, self._rate = self._bucket(limits.rpm, _START_FILL_REQUESTS)
        self._tpm, self._token_rate = self._bucket(limits.tpm, _START_FILL_TOKENS)
        self.stats = LaneStats(cap=self._cap.value, rpm=limits.rpm, tpm=limits.tpm)

    def _bucket(self, per_minute: float | None, start_fill: float) -> tuple[TokenBucket | None, Aimd | None]:
        if per_minute is None:
            return None, None
        bucket = TokenBucket(per_minute, burst_s=self.limits.burst_s, start_fill=start_fill, clock=self._clock)
        rate = Aimd(
            per_minute,
            floor=min(per_minute, 1.0),
            factor=_RATE_FACTOR,
            step=per_minute * _RATE_STEP_FRACTION,
        )
        return bucket, rate

    async def call(self, request: ChatRequest, *, tab: CallTab | None = None) -> CallOutcome:
        """Send `request` until it completes, fails or the spending cap skips it.

        `tab` is the call's account (reservations against the cap, billed and possibly
        billed money): read it after the call, whatever the outcome. Never raises for
        a provider failure (the outcome says why in one line); cancellation propagates.
        """
        stats = self.stats
        stats.started += 1
        started = self._clock()
        tab = tab if tab is not None else CallTab()
        estimate = self._estimate(request)
        attempts = http_429 = overload_attempts = 0
        unusable: list[Unusable] = []
        overload_since: float | None = None
        http_status: int | None = None

        def end(status: Literal["failed", "skipped"], error: str) -> CallOutcome:
            stats.failed += status == "failed"
            return CallOutcome(
                status=status,
                attempts=attempts,
                retries=max(attempts - 1, 0),
                http_429=http_429,
                error=error,
                elapsed_s=self._clock() - started,
                unusable=unusable[-1].kind if unusable else None,
                http_status=http_status,
            )

        while True:
            answer = await self._attempt(request, estimate, tab)
            if answer is None:
                if self.breaker.open:
                    return end("failed", self._breaker_error())
                return end("skipped", "budget")
            attempts += 1
            http_status = answer.http_status
            if isinstance(answer, ChatResult):
                stats.completed += 1
                stats.estimated_input_tokens += estimate
                return CallOutcome(
                    status="completed",
                    result=answer,
                    attempts=attempts,
                    retries=attempts - 1,
                    http_429=http_429,
                    elapsed_s=self._clock() - started,
                    http_status=http_status,
                )
            if isinstance(answer, Retryable) and answer.rate_limited:
                http_429 += 1
            if isinstance(answer, Unusable):
                unusable.append(answer)
            if isinstance(answer, Retryable) and answer.overloaded:
                overload_attempts += 1
                if overload_since is None:
                    overload_since = self._clock()
            else:
                # The outage is measured in a row: a 429 or a timeout between two 503s
                # minutes apart means two short overloads, not one long one.
                overload_since = None
            error = self._give_up(answer, request, attempts - overload_attempts, unusable, overload_since)
            if error is not None:
                log.warning("%s", error)
                return end("failed", error)
            stats.retries += 1
            if isinstance(answer, Retryable) and answer.overloaded:
                assert overload_since is not None
                # An overloaded server's Retry-After is a hint, not a quota: never wait
                # longer than the overload backoff cap, nor past the overload horizon.
                after_s = answer.after_s
                if after_s is not None:
                    after_s = min(after_s, self.limits.overload_backoff_cap_s)
                delay_s = retry_delay_s(
                    overload_attempts,
                    after_s,
                    base_s=self.limits.backoff_base_s,
                    cap_s=self.limits.overload_backoff_cap_s,
                    rng=self._rng,
                )
                horizon_s = overload_since + self.limits.overload_retry_s - self._clock()
                delay_s = max(min(delay_s, horizon_s), 0.0)
            else:
                delay_s = retry_delay_s(
                    max(attempts - overload_attempts, 1),
                    answer.after_s if isinstance(answer, Retryable) else None,
                    base_s=self.limits.backoff_base_s,
                    cap_s=self.limits.backoff_cap_s,
                    rng=self._rng,
                )
            await anyio.sleep(delay_s)

    def _breaker_error(self) -> str:
        return (
            f"teacher {self.name!r}: {self.breaker.cause}, calls to it stopped (not sent); "
            "top up the account or fix the key, then rerun the same command to resume"
        )

    def _give_up(
        self,
        error: CommitteeError,
        request: ChatRequest,
        attempts: int,
        unusable: list[Unusable],
        overload_since: float | None,
    ) -> str | None:
        """The one-line error if the call must stop here, None if it should retry.

        `attempts` counts the attempts that were not overload answers.
        """
        reason = " ".join(str(error).split())
        if isinstance(error, Unusable):
            if error.kind == "truncated":
                # A reasoning model's thinking shares the limit: a lower effort frees room as well.
                thinking = " or lower `reasoning`" if request.reasoning is not None else ""
                return (
                    f"teacher {self.name!r}: {reason}; raise `max_tokens` (now {request.max_tokens}){thinking} "
                    f"in teacher {self.name!r}'s [[teachers]] section, then rerun"
                )
            if len(unusable) >= _UNUSABLE_ANSWERS[error.kind]:
                return f"teacher {self.name!r}: {len(unusable)} billed answers without usable text, the last {reason}"
            return None
        if isinstance(error, AccountError):
            return (
                f"teacher {self.name!r}: {error.cause} ({reason}); "
                "top up the account or fix the key, then rerun the same command to resume"
            )
        if isinstance(error, Permanent):
            return f"teacher {self.name!r}: {reason}"
        assert isinstance(error, Retryable)
        # Overload first: a 503/529 with a long Retry-After is still an outage that
        # passes in minutes, retried over the overload horizon (see `call`), not a quota.
        if error.overloaded:
            assert overload_since is not None
            if self._clock() - overload_since > self.limits.overload_retry_s:
                return (
                    f"teacher {self.name!r}: provider overloaded for over "
                    f"{self.limits.overload_retry_s:g} s: {reason}; rerun later to resume"
                )
            return None
        if error.after_s is not None and error.after_s > self.limits.max_retry_after_s:
            return (
                f"teacher {self.name!r}: provider asks to wait {error.after_s:.0f} s "
                f"(a quota, not a burst): {reason}; resume the run later"
            )
        if attempts >= self.limits.max_attempts:
            return f"teacher {self.name!r}: gave up after {attempts} attempts: {reason}"
        return None

    async def _attempt(
        self, request: ChatRequest, estimate: int, tab: CallTab
    ) -> ChatResult | Retryable | Permanent | Unusable | None:
        """One admitted attempt, or None when it was not sent (spending cap, open breaker).

        The slot is released and the tab settled whatever happens, cancellation included.
        """
        # The provider counts the whole output limit, thinking budget included.
        admitted = await self._admit(estimate + request.output_limit, tab)
        if admitted is None:
            return None
        seq, charged = admitted
        settled = False
        # No await between admission and `try`: nothing can cancel us in between.
        try:
            with anyio.move_on_after(self.limits.timeout_s + _TIMEOUT_GRACE_S):
                try:
                    result = await self._client.complete(request, timeout_s=self.limits.timeout_s)
                except Unusable as exc:
                    self._bill_unusable(exc, request, estimate, tab, charged)
                    settled = True
                    return exc
                except (Retryable, Permanent) as exc:
                    if isinstance(exc, Retryable) and exc.possibly_billed:
                        tab.abandoned()
                        self.stats.possibly_billed += 1
                    else:
                        tab.released()
                    settled = True
                    self._on_failure(exc, seq, charged)
                    return exc
                except Exception as exc:
                    # A bug in an adapter must not take the other teachers' calls down
                    # with it: log it in full, fail this call, keep the lane going. The
                    # answer may have been billed: count it as possibly billed.
                    log.exception("teacher %r: unexpected error from the client", self.name)
                    tab.abandoned()
                    self.stats.possibly_billed += 1
                    settled = True
                    error = Permanent(f"unexpected {type(exc).__name__}: {exc}")
                    self._on_failure(error, seq, charged)
                    return error
                if result.usage_reported and not (
                    plausible_tokens(result.input_tokens) and plausible_tokens(result.output_tokens)
                ):
                    # The adapters drop garbled usage already; a client that does not must
                    # not put negative or absurd money in the tab or the store either.
                    log.warning("teacher %r: implausible usage reported; estimating it", self.name)
                    result.usage_reported, result.input_tokens, result.output_tokens = False, 0, 0
                if result.usage_reported:
                    used = result.input_tokens + result.output_tokens
                    tab.billed(result.input_tokens, result.output_tokens, detail=result.detail)
                else:
                    # Billed all the same: estimate rather than book it as free.
                    output = estimate_tokens(result.text)
                    used = estimate + output
                    tab.billed(estimate, output, estimated=True)
                settled = True
                self._on_success(result, charged, used)
                return result
            tab.abandoned()
            self.stats.possibly_billed += 1
            settled = True
            timeout = Retryable(f"no answer within {self.limits.timeout_s:g} s", possibly_billed=True)
            self._on_failure(timeout, seq, charged)
            return timeout
        finally:
            if not settled:
                # Cancelled while the request was out: the provider may still bill it.
                tab.abandoned()
            self._release()

    def _bill_unusable(
        self, answer: Unusable, request: ChatRequest, estimate: int, tab: CallTab, charged: float
    ) -> None:
        self.stats.unusable += 1
        if plausible_tokens(answer.input_tokens) and plausible_tokens(answer.output_tokens):
            assert answer.input_tokens is not None and answer.output_tokens is not None
            used = answer.input_tokens + answer.output_tokens
            tab.billed(answer.input_tokens, answer.output_tokens, detail=answer.detail or NO_DETAIL)
        else:
            # No usage reported: a truncated answer used all of its output limit, the others none we can see.
            output = request.output_limit if answer.kind == "truncated" else 0
            used = estimate + output
            tab.billed(estimate, output, estimated=True)
        self.breaker.record_success()
        if self._tpm is not None:
            # Billed, so counted by the provider's TPM too: reconcile like a success.
            self._reconcile_tpm(charged, used)

    async def _admit(self, tokens: int, tab: CallTab) -> tuple[int, float] | None:
        """Wait in line, then take a slot, a request, `tokens` (clamped) and the call's
        worst case from the budget; returns the call's sequence number and the TPM charge
        actually taken, or None when it must not be sent (cap reached, breaker open)."""
        self.stats.waiting += 1
        try:
            async with self._fifo:
                while True:
                    if self.breaker.open:
                        return None
                    wait_s = self._pause_until - self._clock()
                    if self._rpm is not None:
                        wait_s = max(wait_s, self._rpm.wait_s(1))
                    if self._tpm is not None:
                        wait_s = max(wait_s, self._tpm.wait_s(tokens))
                    slot_free = self._in_flight < int(self._cap.value)
                    if slot_free and wait_s <= 0:
                        # Reserved last, just before sending: a call waiting in line holds no money.
                        verdict = tab.reserve()
                        if verdict == "reserved":
                            break
                        if verdict == "refused":
                            return None
                        assert tab.budget is not None
                        await tab.budget.changed()
                        continue
                    # Sleep until the buckets allow it, but wake early when a call ends:
                    # its refund of unused max_tokens, its freed slot or its 429 changes
                    # what we may do, and a head sleeping through a refund idles the lane.
                    self._call_ended = anyio.Event()
                    with anyio.move_on_after(wait_s if slot_free else math.inf):
                        await self._call_ended.wait()
                charged = 0.0
                if self._rpm is not None:
                    self._rpm.take(1)
                if self._tpm is not None:
                    charged = self._tpm.clamp(tokens)
                    self._tpm.take(charged)
                self._in_flight += 1
                self.stats.in_flight = self._in_flight
                seq = self._next_seq
                self._next_seq += 1
                return seq, charged
        finally:
            self.stats.waiting -= 1

    def _release(self) -> None:
        self._in_flight -= 1
        self.stats.in_flight = self._in_flight
        if self._call_ended is not None:
            self._call_ended.set()
            self._call_ended = None

    def _reconcile_tpm(self, charged: float, used: int) -> None:
        """Settle a TPM charge against the tokens the provider counted."""
        assert self._tpm is not None
        if charged > used:
            self._tpm.refund(charged - used)
        else:
            # At most one bucketful: a debt deeper than that (a prompt far over our
            # estimate) would stall the lane for longer than any provider window.
            self._tpm.take(min(used - charged, self._tpm.capacity))

    def _on_success(self, result: ChatResult, charged: float, used: int) -> None:
        self.breaker.record_success()
        self._overloads_in_a_row = 0
        stats = self.stats
        stats.input_tokens += result.input_tokens
        stats.output_tokens += result.output_tokens
        if self._tpm is not None:
            # Reconcile: we charged estimate + max_tokens, the provider counts what was
            # used (our estimate of it when it reported none).
            self._reconcile_tpm(charged, used)
        self._adopt_reported_limits(result)
        self._latency_s = result.latency_s if self._latency_s == 0 else 0.9 * self._latency_s + 0.1 * result.latency_s
        # Rates below their ceiling grow back (the common case, at the ceiling, costs nothing).
        rate, bucket = self._rate, self._rpm
        if rate is not None and bucket is not None and rate.value < rate.ceiling:
            rate.on_success()
            bucket.set_rate(rate.value)
            stats.rpm = rate.value
        rate, bucket = self._token_rate, self._tpm
        if rate is not None and bucket is not None and rate.value < rate.ceiling:
            rate.on_success()
            bucket.set_rate(rate.value)
            stats.tpm = rate.value
        self._cap.on_success(floor=self._needed_in_flight())
        stats.cap = self._cap.value

    def _needed_in_flight(self) -> float | None:
        """Little's law: the calls in flight the current rate needs (with headroom).

        A cap below this cannot protect a rate limit (the buckets do that); it only
        throttles throughput, so the cap never shrinks under it while a rate is known.
        """
        if self._rate is None or self._latency_s == 0:
            return None
        return math.ceil(self._rate.value / 60.0 * self._latency_s * 1.5) + 1

    def _adopt_reported_limits(self, result: ChatResult) -> None:
        """A provider announcing a lower limit than configured is right: lower ours for good."""
        info = result.rate_limit
        if info is None:
            return
        if info.limit_requests and _per_minute(info.limit_requests, info.remaining_requests, info.reset_requests_s):
            self._rpm, self._rate = self._lower(self._rpm, self._rate, info.limit_requests, _START_FILL_REQUESTS)
        limit_tokens = info.limit_tokens
        if info.limit_input_tokens and info.limit_output_tokens:
            # Anthropic limits input and output apart and its "tokens" headers report the
            # tighter of the two; our one bucket charges both, so it gets their sum.
            limit_tokens = info.limit_input_tokens + info.limit_output_tokens
        elif info.limit_input_tokens or info.limit_output_tokens:
            limit_tokens = None
        if limit_tokens and _per_minute(
            limit_tokens, info.remaining_tokens if limit_tokens == info.limit_tokens else None, info.reset_tokens_s
        ):
            self._tpm, self._token_rate = self._lower(self._tpm, self._token_rate, limit_tokens, _START_FILL_TOKENS)
        self._publish_rates()

    def _publish_rates(self) -> None:
        self.stats.rpm = self._rate.value if self._rate else None
        self.stats.tpm = self._token_rate.value if self._token_rate else None

    def _lower(
        self, bucket: TokenBucket | None, rate: Aimd | None, reported: float, start_fill: float
    ) -> tuple[TokenBucket | None, Aimd | None]:
        if bucket is None or rate is None:
            log.info("teacher %r: provider reports a limit of %g per minute; adopting it", self.name, reported)
            return self._bucket(reported, start_fill)
        if reported < rate.ceiling:
            log.info(
                "teacher %r: provider reports a limit of %g per minute, below the configured %g; adopting it",
                self.name,
                reported,
                rate.ceiling,
            )
            rate.lower_ceiling(reported)
            rate.step = rate.ceiling * _RATE_STEP_FRACTION
            bucket.set_rate(rate.value)
        return bucket, rate

    def _on_failure(self, error: Retryable | Permanent, seq: int, charged: float) -> None:
        if self._tpm is not None and charged:
            # Providers do not count tokens for a call answered with an error.
            self._tpm.refund(charged)
        if isinstance(error, AccountError):
            self.stats.account_errors += 1
            was_open = self.breaker.open
            self.breaker.record_account_error(error.cause)
            if self.breaker.open and not was_open:
                log.error("%s", self._breaker_error())
            return
        if not (isinstance(error, Retryable) and (error.rate_limited or error.overloaded)):
            return
        if error.rate_limited:
            self.stats.http_429 += 1
        else:
            self.stats.overloaded += 1
            self._overloads_in_a_row += 1
            if self._overloads_in_a_row < _OVERLOADS_TO_SHRINK:
                return  # one 503 among successes is a node's hiccup, not an outage
        if not self._cap.on_congestion(seq, self._next_seq):
            return  # a 429 from a call admitted before the last shrink: same event
        self.stats.congestion_events += 1
        self.stats.cap = self._cap.value
        if error.overloaded:
            # Overload is the provider's capacity, not our rate: fewer calls in flight
            # (and each failed call's backoff) while it lasts, the rate untouched. The
            # first success lifts the cap back to what the rate needs (Little's law), so
            # the lane is at full speed again the moment the outage ends. Only a
            # Retry-After pauses the whole lane.
            if error.after_s and error.after_s > 0:
                self._pause_until = max(self._pause_until, self._clock() + min(error.after_s, _MAX_PAUSE_S))
            log.info("teacher %r: provider overloaded; in-flight cap now %d", self.name, int(self._cap.value))
            return
        pause_s = min(error.after_s if error.after_s and error.after_s > 0 else 1.0, _MAX_PAUSE_S)
        self._pause_until = max(self._pause_until, self._clock() + pause_s)
        for bucket, rate in ((self._rpm, self._rate), (self._tpm, self._token_rate)):
            if bucket is not None and rate is not None:
                rate.on_congestion(seq, self._next_seq)
                bucket.set_rate(rate.value)
                # The provider's bucket is empty until the pause ends; without this ours
                # would refill during the pause and release a burst into more 429s.
                bucket.drain(pause_s)
        self._publish_rates()
        log.info(
            "teacher %r: rate limited; in-flight cap now %d, pausing %.2f s", self.name, int(self._cap.value), pause_s
        )


def _per_minute(limit: int, remaining: int | None, reset_s: float | None) -> bool:
    """Whether a reported limit is a per-minute one we may adopt.

    A provider bucket refills continuously, so the time it says it needs to refill what
    was used gives the bucket's window: about 60 s for RPM/TPM, a day for Groq's
    requests-per-day in `x-ratelimit-limit-requests`
    (https://console.groq.com/docs/rate-limits#rate-limit-headers).
    """
    if reset_s is None:
        return True
    if reset_s > _PER_MINUTE_WINDOW_S:
        return False
    if remaining is not None and remaining < limit:
        return reset_s * limit / (limit - remaining) <= _PER_MINUTE_WINDOW_S
    return True
