"""One teacher's lane: admission at its limits, adaptive concurrency, retries.

A lane wraps one client (provider + model + key) and is the only way the engine
calls it: `await lane.call(request) -> CallOutcome`. Every call ends `completed` or
`failed` (after `max_attempts`, or at once on a `Permanent` error); cancellation
propagates and the in-flight count is released in `finally`.

Admission is FIFO: a call waits in line (an anyio Lock hands over in arrival order)
and the head of the line waits until all of these hold, then takes them at once:
- a free slot under the adaptive in-flight cap (AIMD, engine/concurrency.py);
- no lane-wide pause (set by a 429 to the server's retry-after);
- one request from the RPM bucket and `estimated prompt + max_tokens` from the TPM
  bucket (engine/limiter.py), the way OpenAI counts; the TPM charge is reconciled with
  the provider-reported usage when the answer arrives, so a lane whose answers are
  much shorter than max_tokens still runs at its TPM.

The configured limits may be wrong. Two things bring a lane down to the real ones
without a retry storm: a rate-limit header announcing a lower limit lowers the bucket
for good, and each congestion event (a burst of 429s) multiplies the request rate
(and the in-flight cap) down, both growing back additively on successes.
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

from adapters.base import ChatRequest, ChatResult
from engine.backoff import retry_delay_s
from engine.concurrency import Aimd
from engine.config import TeacherSection
from engine.errors import Permanent, Retryable
from engine.limiter import Clock, TokenBucket
from engine.tokens import estimate_request_tokens

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
    # run (a resumed run retries it) and the lane's other calls keep going.
    max_retry_after_s: float = 60.0

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
    """How one call ended. `error` is one line, set when `status == "failed"`."""

    status: Literal["completed", "failed"]
    result: ChatResult | None = None
    attempts: int
    retries: int
    http_429: int = 0
    error: str | None = None
    elapsed_s: float = 0.0


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
    congestion_events: int = 0
    retries: int = 0
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

    async def call(self, request: ChatRequest) -> CallOutcome:
        """Send `request` until it completes, fails permanently or runs out of attempts.

        Never raises for a provider failure (the outcome says `failed` with a one-line
        error); cancellation propagates.
        """
        stats = self.stats
        stats.started += 1
        started = self._clock()
        estimate = self._estimate(request)
        attempts = http_429 = 0
        while True:
            attempts += 1
            answer = await self._attempt(request, estimate)
            if isinstance(answer, Retryable) and answer.rate_limited:
                http_429 += 1
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
                )
            error = self._give_up(answer, attempts)
            if error is not None:
                stats.failed += 1
                log.warning("%s", error)
                return CallOutcome(
                    status="failed",
                    attempts=attempts,
                    retries=attempts - 1,
                    http_429=http_429,
                    error=error,
                    elapsed_s=self._clock() - started,
                )
            stats.retries += 1
            assert isinstance(answer, Retryable)
            await anyio.sleep(
                retry_delay_s(
                    attempts,
                    answer.after_s,
                    base_s=self.limits.backoff_base_s,
                    cap_s=self.limits.backoff_cap_s,
                    rng=self._rng,
                )
            )

    def _give_up(self, error: Retryable | Permanent, attempts: int) -> str | None:
        """The one-line error if the call must stop here, None if it should retry."""
        reason = " ".join(error.reason.split())
        if isinstance(error, Permanent):
            return f"teacher {self.name!r}: {reason}"
        if error.after_s is not None and error.after_s > self.limits.max_retry_after_s:
            return (
                f"teacher {self.name!r}: provider asks to wait {error.after_s:.0f} s "
                f"(a quota, not a burst): {reason}; resume the run later"
            )
        if attempts >= self.limits.max_attempts:
            return f"teacher {self.name!r}: gave up after {attempts} attempts: {reason}"
        return None

    async def _attempt(self, request: ChatRequest, estimate: int) -> ChatResult | Retryable | Permanent:
        """One admitted attempt; the slot is released whatever happens, cancellation included."""
        seq, charged = await self._admit(estimate + request.max_tokens)
        # No await between admission and `try`: nothing can cancel us in between.
        try:
            with anyio.move_on_after(self.limits.timeout_s + _TIMEOUT_GRACE_S):
                try:
                    result = await self._client.complete(request, timeout_s=self.limits.timeout_s)
                except (Retryable, Permanent) as exc:
                    self._on_failure(exc, seq, charged)
                    return exc
                except Exception as exc:
                    # A bug in an adapter must not take the other teachers' calls down
                    # with it: log it in full, fail this call, keep the lane going.
                    log.exception("teacher %r: unexpected error from the client", self.name)
                    error = Permanent(f"unexpected {type(exc).__name__}: {exc}")
                    self._on_failure(error, seq, charged)
                    return error
                self._on_success(result, charged)
                return result
            timeout = Retryable(f"no answer within {self.limits.timeout_s:g} s")
            self._on_failure(timeout, seq, charged)
            return timeout
        finally:
            self._release()

    async def _admit(self, tokens: int) -> tuple[int, float]:
        """Wait in line, then take a slot, a request and `tokens` (clamped); returns the
        call's sequence number and the TPM charge actually taken."""
        self.stats.waiting += 1
        try:
            async with self._fifo:
                while True:
                    wait_s = self._pause_until - self._clock()
                    if self._rpm is not None:
                        wait_s = max(wait_s, self._rpm.wait_s(1))
                    if self._tpm is not None:
                        wait_s = max(wait_s, self._tpm.wait_s(tokens))
                    slot_free = self._in_flight < int(self._cap.value)
                    if slot_free and wait_s <= 0:
                        break
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

    def _on_success(self, result: ChatResult, charged: float) -> None:
        stats = self.stats
        stats.input_tokens += result.input_tokens
        stats.output_tokens += result.output_tokens
        if self._tpm is not None:
            # Reconcile: we charged estimate + max_tokens, the provider counts what was used.
            excess = charged - (result.input_tokens + result.output_tokens)
            if excess > 0:
                self._tpm.refund(excess)
            else:
                self._tpm.take(-excess)
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
        if info.limit_requests:
            self._rpm, self._rate = self._lower(
                self._rpm, self._rate, info.limit_requests, _START_FILL_REQUESTS
            )
        if info.limit_tokens:
            self._tpm, self._token_rate = self._lower(
                self._tpm, self._token_rate, info.limit_tokens, _START_FILL_TOKENS
            )
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
            log.info("teacher %r: provider reports a limit of %g per minute, below the configured %g; adopting it",
                     self.name, reported, rate.ceiling)
            rate.lower_ceiling(reported)
            rate.step = rate.ceiling * _RATE_STEP_FRACTION
            bucket.set_rate(rate.value)
        return bucket, rate

    def _on_failure(self, error: Retryable | Permanent, seq: int, charged: float) -> None:
        if self._tpm is not None and charged:
            # Providers do not bill tokens for a call that failed.
            self._tpm.refund(charged)
        if not (isinstance(error, Retryable) and error.rate_limited):
            return
        self.stats.http_429 += 1
        if not self._cap.on_congestion(seq, self._next_seq):
            return  # a 429 from a call admitted before the last shrink: same event
        self.stats.congestion_events += 1
        self.stats.cap = self._cap.value
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
        log.info("teacher %r: rate limited; in-flight cap now %d, pausing %.2f s", self.name,
                 int(self._cap.value), pause_s)
