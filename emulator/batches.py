"""The emulated Batch APIs' common core: a batch is a state machine on the emulator's clock.

Provider-neutral. A `Job` holds one batch's requests; whenever anyone looks at it
(`BatchBook.advance`: a poll, a download, `Emulator.stats()`) the requests whose time
has come are answered by the sync path's answer function and billed then, at half
price (`Emulator.run_batched`). The protocol modules (batch_openai.py,
batch_anthropic.py, batch_gemini.py) turn jobs into each provider's JSON.

Timeline of a batch created at t0 with n requests (`BatchBehaviour`): validating until
t0 + validate_s = v; request i (0-based) finishes at v + delay_s * (i + 1) / n; the batch
is completed when the last has. It expires at t0 + expire_after_s: requests not finished
by then come back expired, unbilled. A cancel at tc cancels the requests not finished
by tc, and the batch is cancelling until tc + cancel_s, then cancelled.

Batch work never touches the sync rate limiter. OpenAI: "Batch API rate limits are
separate from existing per-model rate limits" (https://platform.openai.com/docs/guides/batch#rate-limits);
Anthropic: "The Message Batches API has its own rate limits" on requests in the processing
queue, apart from the Messages API's (https://docs.anthropic.com/en/api/rate-limits#message-batches-api);
Gemini: batch mode has its own limits, concurrent batches and enqueued tokens
(https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from itertools import count
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec
from aiohttp import web

from emulator.reasoning import Rejected
from emulator.spec import AnswerRequest, BatchBehaviour
from emulator.stats import ModelStats
from emulator.wire import Wire

if TYPE_CHECKING:
    from emulator.server import Emulator

Phase = Literal["validating", "failed", "in_progress", "completed", "expired", "cancelling", "cancelled"]
OutcomeKind = Literal["succeeded", "errored", "expired", "cancelled"]
TERMINAL: frozenset[Phase] = frozenset(("failed", "completed", "expired", "cancelled"))

# Ids unique within the process, like the sync path's.
serial = count(1)


class Outcome(msgspec.Struct, frozen=True):
    """How one request of a batch came out: the answer (succeeded) or the provider's error document (errored)."""

    kind: OutcomeKind
    status: int = 200
    body: bytes = b""


class Item:
    """One request of a batch: its `custom_id`, the parsed request (None with `invalid`: the
    provider's (status, error document) for a request it cannot run), when it finishes."""

    __slots__ = ("ask", "custom_id", "done_at", "fails", "invalid", "outcome")

    def __init__(self, custom_id: str, ask: AnswerRequest | None, invalid: tuple[int, bytes] | None = None):
        self.custom_id = custom_id
        self.ask = ask
        self.invalid = invalid
        self.fails = False
        self.done_at = 0.0
        self.outcome: Outcome | None = None


class Runner(Protocol):
    """What a batch needs of the emulator: answer and bill one request, the counters of a model."""

    def run_batched(self, wire: Wire, ask: AnswerRequest, custom_id: str) -> bytes: ...
    def model_stats(self, model: str) -> ModelStats: ...


class Job:
    """One batch. `tag` is what a client finds it by (OpenAI metadata, Gemini display name);
    `errors` is set for a batch that failed validation (provider-shaped, read by its module);
    `files` holds a provider module's own per-batch data (OpenAI's output file ids)."""

    def __init__(
        self,
        job_id: str,
        wire: Wire,
        items: list[Item],
        created_at: float,
        behaviour: BatchBehaviour,
        *,
        tag: object = None,
        model: str = "",
        errors: list[dict[str, object]] | None = None,
    ):
        self.id = job_id
        self.wire = wire
        self.items = items
        self.tag = tag
        self.model = model
        self.errors = errors
        self.created_at = created_at
        self.wall_created = time.time()
        self.validated_at = created_at + behaviour.validate_s
        self.expire_at = created_at + behaviour.expire_after_s
        self.cancel_s = behaviour.cancel_s
        self.cancel_at: float | None = None
        self.finished_at: float | None = None  # when the last request finished, for a batch that completed
        self.files: dict[str, str] = {}
        self.written = False  # the provider module wrote its end-of-batch output
        self.cursor = 0  # requests finish in order: the first one not finished yet
        n = len(items)
        if n == 0:
            self.finished_at = self.validated_at
        for i, item in enumerate(items):
            item.done_at = self.validated_at + behaviour.delay_s * (i + 1) / n

    def phase(self, now: float) -> Phase:
        """Where the batch stands at `now` (after `BatchBook.advance`)."""
        if self.errors is not None:
            return "validating" if now < self.validated_at else "failed"
        if self.cancel_at is not None:
            return "cancelling" if now < self.cancel_at + self.cancel_s else "cancelled"
        if self.finished_at is not None:
            return "completed"
        if now >= self.expire_at:
            return "expired"
        return "validating" if now < self.validated_at else "in_progress"

    def ended_at(self, now: float) -> float | None:
        """When the batch reached its end state (on the emulator's clock), None while it has not."""
        phase = self.phase(now)
        if phase not in TERMINAL:
            return None
        return {
            "failed": self.validated_at,
            "completed": self.finished_at,
            "expired": self.expire_at,
            "cancelled": (self.cancel_at or 0.0) + self.cancel_s,
        }[phase]

    def wall(self, at: float) -> float:
        """Unix time of a moment on the emulator's clock."""
        return self.wall_created + (at - self.created_at)

    def counts(self) -> dict[str, int]:
        """Requests per outcome so far, and `processing` (not finished)."""
        out = {"processing": 0, "succeeded": 0, "errored": 0, "expired": 0, "cancelled": 0}
        for item in self.items:
            out[item.outcome.kind if item.outcome is not None else "processing"] += 1
        return out

    def outcomes(self) -> Iterable[tuple[Item, Outcome]]:
        """The finished requests with their outcomes, in request order."""
        return ((item, item.outcome) for item in self.items if item.outcome is not None)


class StoredFile(msgspec.Struct, frozen=True):
    """A file held by the provider (OpenAI's Files API): batch input, output and error files."""

    filename: str
    purpose: str
    data: bytes
    created_at: int


class BatchBook:
    """Every batch of one emulator, per provider; creates, advances, cancels and lists them."""

    def __init__(self, behaviour: BatchBehaviour, seed: int, clock: Callable[[], float], runner: Runner):
        self.behaviour = behaviour
        self._clock = clock
        self._runner = runner
        # Its own generator, so batches leave the sync path's fault draws where they were.
        self._rng = random.Random(seed + 3)
        self._jobs: dict[str, dict[str, Job]] = {}
        self.files: dict[str, StoredFile] = {}
        self.created = 0
        self.refused = 0

    def now(self) -> float:
        """The emulator's clock."""
        return self._clock()

    def in_flight(self, provider: str) -> int:
        """Batches of `provider` not yet in an end state."""
        return sum(1 for job in self.listed(provider) if job.phase(self._clock()) not in TERMINAL)

    def over_in_flight(self, provider: str) -> bool:
        """Whether one more batch would pass `max_in_flight` (counts it refused when so)."""
        cap = self.behaviour.max_in_flight
        if cap is not None and self.in_flight(provider) >= cap:
            self.refused += 1
            return True
        return False

    def create(
        self,
        provider: str,
        job_id: str,
        wire: Wire,
        items: list[Item],
        *,
        tag: object = None,
        model: str = "",
        errors: list[dict[str, object]] | None = None,
    ) -> Job:
        """Record a new batch (one that failed validation when `errors` is given) and return it."""
        job = Job(job_id, wire, items, self._clock(), self.behaviour, tag=tag, model=model, errors=errors)
        self._jobs.setdefault(provider, {})[job_id] = job
        self.created += 1
        if errors is None:
            share = self.behaviour.error_share
            for item in items:
                if item.ask is not None:
                    self._runner.model_stats(item.ask.model).batch_requests += 1
                    item.fails = share > 0.0 and self._rng.random() < share
        return job

    def get(self, provider: str, job_id: str) -> Job | None:
        """The batch, advanced to now; None when there is none by that id."""
        job = self._jobs.get(provider, {}).get(job_id)
        if job is not None:
            self.advance(job)
        return job

    def listed(self, provider: str) -> list[Job]:
        """Every batch of `provider`, newest first, advanced to now."""
        jobs = list(reversed(self._jobs.get(provider, {}).values()))
        for job in jobs:
            self.advance(job)
        return jobs

    def advance_all(self) -> None:
        """Bring every batch up to now (before the stats are read)."""
        for jobs in self._jobs.values():
            for job in jobs.values():
                self.advance(job)

    def cancel(self, job: Job) -> bool:
        """Cancel a batch: requests not finished by now are cancelled. False when it had already ended."""
        now = self._clock()
        self.advance(job)
        if job.phase(now) in TERMINAL or job.cancel_at is not None:
            return False
        job.cancel_at = now
        self.advance(job)
        return True

    def advance(self, job: Job) -> None:
        """Finish (answer and bill, or fail) the requests whose time has come; end a stopped batch's rest."""
        if job.errors is not None or job.cursor == len(job.items):
            return
        now = self._clock()
        stop = job.expire_at if job.cancel_at is None else min(job.expire_at, job.cancel_at)
        until = min(now, stop)
        items = job.items
        while job.cursor < len(items) and items[job.cursor].done_at <= until:
            self._finish(job, items[job.cursor])
            job.cursor += 1
        if job.cursor == len(items):
            job.finished_at = items[-1].done_at
        elif now >= stop:
            # A cancel is only taken before expiry, so a cancelled batch's rest is cancelled.
            kind: OutcomeKind = "cancelled" if job.cancel_at is not None else "expired"
            for item in items[job.cursor :]:
                item.outcome = Outcome(kind)
                if item.ask is not None:
                    stats = self._runner.model_stats(item.ask.model)
                    if kind == "cancelled":
                        stats.batch_cancelled += 1
                    else:
                        stats.batch_expired += 1
            job.cursor = len(items)

    def _finish(self, job: Job, item: Item) -> None:
        if item.invalid is not None or item.ask is None:
            status, body = item.invalid or job.wire.error("invalid", "invalid request")
            item.outcome = Outcome("errored", status, body)
            return
        if item.fails:
            status, body = job.wire.error("server", "injected fault: the request failed inside the batch")
            item.outcome = Outcome("errored", status, body)
            self._runner.model_stats(item.ask.model).batch_errored += 1
            return
        item.outcome = Outcome("succeeded", 200, self._runner.run_batched(job.wire, item.ask, item.custom_id))


# --- helpers of the protocol modules ----------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def json_response(document: object, status: int = 200) -> web.Response:
    """A JSON response of `document` (bytes are sent as they are)."""
    body = document if isinstance(document, bytes) else _encoder.encode(document)
    return web.Response(status=status, body=body, content_type="application/json")


def jsonl_response(lines: Iterable[object], content_type: str = "application/jsonl") -> web.Response:
    """A JSON Lines body, one document per line."""
    body = b"".join(_encoder.encode(line) + b"\n" for line in lines)
    return web.Response(body=body, content_type=content_type)


def rfc3339(unix_s: float | None) -> str | None:
    """An RFC 3339 UTC time with microseconds, as Anthropic and Google write them."""
    if unix_s is None:
        return None
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def limit(override: int | None, provider_limit: int) -> int:
    """The spec's override of a provider limit, else the provider's."""
    return provider_limit if override is None else override


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[["Emulator", web.Request], Awaitable[web.StreamResponse]]


def route(emu: Emulator, wire: Wire, handler: Serve) -> Handler:
    """An aiohttp handler: the sync path's auth check (no key: the provider's 401), then `handler`;
    whatever happens, `Emulator.wait_for` is woken."""

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            if not wire.has_auth(request.headers):
                emu.refused(unauthorized=True)
                status, body = wire.error("auth", "missing API key header")
                return json_response(body, status)
            return await handler(emu, request)
        finally:
            emu.notify()

    return serve


def refuse(emu: Emulator, wire: Wire, kind: str, message: str) -> web.Response:
    """The provider's error answer for a batch request it refuses (counted as a bad request)."""
    emu.refused()
    status, body = wire.error(kind, message)  # type: ignore[arg-type]
    return json_response(body, status)


def refuse_batch(emu: Emulator, wire: Wire, message: str) -> web.Response:
    """`refuse` of a batch creation itself (malformed, over a limit), counted among the batches refused."""
    emu.batches.refused += 1
    return refuse(emu, wire, "invalid", message)


def parse_item(wire: Wire, custom_id: str, body: bytes, path_model: str | None = None) -> Item:
    """One request of a batch read by the sync path's parser; one it refuses becomes an invalid item
    that comes back errored with the sync path's 400, as the providers answer such a request in a batch."""
    try:
        return Item(custom_id, wire.parse(body, path_model))
    except Rejected as exc:
        return Item(custom_id, None, wire.rejected(exc))
    except (msgspec.DecodeError, ValueError) as exc:
        return Item(custom_id, None, wire.error("invalid", f"invalid request body: {exc}"))


def by_key_header(openai: Handler, gemini: Handler) -> Handler:
    """One path served for two providers: Gemini when the request carries Gemini's key header, else OpenAI."""

    async def serve(request: web.Request) -> web.StreamResponse:
        return await (gemini if "x-goog-api-key" in request.headers else openai)(request)

    return serve
