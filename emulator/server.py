"""The emulator's HTTP server: routes, the per-request path, and `run_emulator`.

One request: auth header -> parse -> quota (out of quota: refused) -> overload
window (refused) -> rate limiter (429 pays nothing) -> fault draw -> answer ->
latency sleep -> bill -> TPM refund of unused max_tokens -> response with
x-ratelimit headers. From the fault draw on the model "runs": a client that goes
away (aiohttp cancels the handler) is billed when `Billing.abandoned` says so.
Per-request work is kept small (no logging, msgspec only, access log off) so a
client in another process can push well over 2,000 req/s through it on 2 cores.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import accumulate

import anyio
import msgspec
from aiohttp import web

from emulator import batch_anthropic, batch_gemini, batch_openai
from emulator.answers import answer_fn_for
from emulator.batches import BatchBook, by_key_header
from emulator.caching import PromptCache, anthropic_min_tokens
from emulator.limiter import ModelLimiter
from emulator.reasoning import Rejected, thinking_tokens
from emulator.spec import FAULT_KINDS, AnswerFn, AnswerRequest, EmulatorSpec
from emulator.stats import EmulatorStats, ModelStats, content_key, snapshot
from emulator.tokens import count_prompt_tokens, count_tokens, fit_tokens
from emulator.wire import REFUSAL_TEXT, WIRES, Finish, Usage, Wire, structured_score_text

# Faults after which the model never ran: nothing to bill, all of max_tokens refunded.
_NOT_RUN = frozenset(("error", "error_200", "reset"))
# Outcomes that are proper answers (None: no fault): always billed, counted as completed.
_PROPER = frozenset((None, "hang", "no_usage"))
_stats_encoder = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(EmulatorSpec)
# SO_LINGER with a zero timeout: close() sends RST, as a crashed server or a proxy reset does.
_LINGER_RST = struct.pack("ii", 1, 0)
_MAX_BODY_BYTES = 300 * 1024 * 1024


class Emulator:
    """A running emulated provider. `answer_fn`, when set, answers instead of `spec.answers`."""

    def __init__(self, spec: EmulatorSpec, answer_fn: AnswerFn | None, clock: Callable[[], float]):
        self.url = ""
        self.answer_fn = answer_fn
        self._clock = clock
        self._configure(spec)
        self._models: dict[str, ModelStats] = {}
        # Per model: requests billed or running to be billed, what `quota_requests` is held against.
        self._committed: dict[str, int] = {}
        self._unauthorized = 0
        self._bad_requests = 0
        self._cache = PromptCache()
        # Set when a request finishes, for `wait_for`; None while nobody waits.
        self._changed: anyio.Event | None = None

    def _configure(self, spec: EmulatorSpec) -> None:
        self.spec = spec
        self._spec_answer_fn = answer_fn_for(spec)
        self._limiters: dict[str, ModelLimiter | None] = {}
        self._latency_rng = random.Random(spec.seed)
        self._fault_rng = random.Random(spec.seed + 1)
        # Its own generator, so adding overloads leaves a seed's faults where they were.
        self._overload_rng = random.Random(spec.seed + 2)
        # Cumulative thresholds, in `FAULT_KINDS` order, for one uniform draw per request.
        self._fault_edges = tuple(accumulate(spec.faults.rates()))
        self._started = self._clock()
        self.batches = BatchBook(spec.batch, spec.seed, self._clock, self)

    def base_url(self, provider: str) -> str:
        """The base_url a client of `provider` should use (OpenAI's includes /v1, as in its SDK)."""
        return self.url + "/v1" if provider == "openai" else self.url

    def stats(self) -> EmulatorStats:
        """A copy of the counters so far (batches brought up to now first)."""
        self.batches.advance_all()
        batches = (self.batches.created, self.batches.refused)
        return snapshot(self._models, self._unauthorized, self._bad_requests, batches)

    def model_stats(self, model: str) -> ModelStats:
        """The live counters of `model` (created on first use)."""
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = ModelStats()
        return stats

    def refused(self, *, unauthorized: bool = False) -> None:
        """Count a request refused before any model was known: without a key, or unreadable."""
        if unauthorized:
            self._unauthorized += 1
        else:
            self._bad_requests += 1

    def notify(self) -> None:
        """Wake `wait_for`: something it may be waiting on changed."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def run_batched(self, wire: Wire, ask: AnswerRequest, custom_id: str) -> bytes:
        """Answer one request of a batch the way the sync path would (never a fault, no rate limit,
        no latency: the batch's clock decided when) and bill it at batch price; the answer's body."""
        text, finish, billed = self._run(wire, ask, None, count_prompt_tokens(ask.messages))
        self._cache_begun(ask)
        stats = self.model_stats(ask.model)
        _bill(stats, ask, billed)
        _complete(stats, ask, billed.input_tokens, billed.output_tokens)
        stats.batch_billed += 1
        stats.batch_input_tokens += billed.input_tokens
        stats.batch_output_tokens += billed.output_tokens
        stats.batch_ids[custom_id] = stats.batch_ids.get(custom_id, 0) + 1
        return wire.answer(ask, text, finish, billed)

    async def wait_for(self, condition: Callable[[EmulatorStats], bool]) -> EmulatorStats:
        """Wait until `condition(stats)` holds, checking again each time a request finishes; return those stats.
        Batches move on the clock but are looked at only when asked: a batch client's polls wake this too.

        For a caller in the emulator's event loop (tests): no polling, so no sleep to tune.

            await emu.wait_for(lambda s: s.total.completed >= 20)
        """
        while not condition(stats := self.stats()):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return stats

    def reset_stats(self, spec: EmulatorSpec | None = None) -> None:
        """Back to a fresh provider: zero counters, full buckets; with `spec`, new limits and faults too."""
        self._configure(spec or self.spec)
        self._models = {}
        self._committed = {}
        self._unauthorized = self._bad_requests = 0
        self._cache = PromptCache()

    # --- the request path ---------------------------------------------------------------------

    def _limiter(self, model: str) -> ModelLimiter | None:
        try:
            return self._limiters[model]
        except KeyError:
            limits = self.spec.limits_for(model)
            limiter = ModelLimiter(limits, self._clock) if limits.is_limited() else None
            self._limiters[model] = limiter
            return limiter

    def _latency_s(self, output_tokens: int) -> float:
        latency = self.spec.latency
        base_ms = latency.median_ms
        if latency.sigma > 0 and base_ms > 0:
            base_ms *= math.exp(latency.sigma * self._latency_rng.gauss(0.0, 1.0))
        return (base_ms + latency.ms_per_output_token * output_tokens) / 1000.0

    async def handle(self, request: web.Request, wire: Wire, path_model: str | None) -> web.StreamResponse:
        """Serve one provider request; whatever its outcome (a client gone included), wake `wait_for`."""
        try:
            return await self._handle(request, wire, path_model)
        finally:
            self.notify()

    async def _handle(self, request: web.Request, wire: Wire, path_model: str | None) -> web.StreamResponse:
        if not wire.has_auth(request.headers):
            self._unauthorized += 1
            return _error_response(wire, "auth", "missing API key header")
        body = await request.read()
        try:
            ask = wire.parse(body, path_model)
        except Rejected as exc:
            # A parameter the model refuses: 400 before the model runs, never billed.
            self._bad_requests += 1
            return _json_response(*wire.rejected(exc))
        except (msgspec.DecodeError, ValueError) as exc:
            self._bad_requests += 1
            return _error_response(wire, "invalid", f"invalid request body: {exc}")

        model = ask.model
        stats = self.model_stats(model)
        stats.received += 1
        quota = self.spec.limits_for(model).quota_requests
        # Requests running count against the quota, so at most `quota` are ever billed.
        if quota is not None and self._committed.get(model, 0) >= quota:
            stats.quota_refused += 1
            return _json_response(*wire.quota_error(model, quota))
        if self.spec.overloads and self._overloaded():
            stats.overloaded += 1
            return _json_response(*wire.overloaded_error())
        input_tokens = count_prompt_tokens(ask.messages)
        limiter = self._limiter(model)
        if limiter is not None:
            wait_s = limiter.admit(input_tokens + ask.max_tokens, input_tokens)
            if wait_s > 0.0:
                stats.rejected_429 += 1
                return _rate_limited(wire, limiter, model, wait_s)
        stats.accepted += 1

        fault = self._draw_fault() if self._fault_edges[-1] > 0.0 else None
        if fault is not None:
            stats.faults += 1
        if fault in _NOT_RUN:
            if limiter is not None:
                limiter.refund_tokens(ask.max_tokens)
            if fault == "error":
                kind = "server" if self._fault_rng.random() < 0.5 else "unavailable"
                return _error_response(wire, kind, "injected fault: the server had an error", limiter)
            if fault == "error_200":
                # OpenAI-compatible gateways (OpenRouter, RunPod's vLLM) answer some errors with a 200
                # whose body is the error: https://github.com/langchain-ai/langchain/pull/40380,
                # https://github.com/runpod-workers/worker-vllm/issues/57
                _status, body = wire.error("server", "injected fault: an error object in a 200")
                return _json_response(200, body)
            _reset_connection(request)
            return web.Response(status=500)  # never written: the connection is gone

        text, finish, billed = self._run(wire, ask, fault, input_tokens)
        output_tokens = billed.output_tokens
        billable = fault in _PROPER or self.spec.billing.unusable
        if billable:
            self._committed[model] = self._committed.get(model, 0) + 1
        try:
            if fault == "hang":
                # Then answer normally, for a client patient enough to still be there.
                await asyncio.sleep(self.spec.faults.hang_s)
            delay_s = self._latency_s(output_tokens)
            if delay_s > 0.0:
                await asyncio.sleep(delay_s)
        except asyncio.CancelledError:
            self._cache_begun(ask)
            # The client went away (handler_cancellation); the model ran on regardless.
            stats.abandoned += 1
            if billable and self.spec.billing.abandoned:
                stats.abandoned_billed += 1
                _bill(stats, ask, billed)
            elif billable:
                self._committed[model] -= 1
            if limiter is not None:
                limiter.refund_tokens(ask.max_tokens - output_tokens)
            raise
        self._cache_begun(ask)
        body = wire.answer(ask, text, finish, billed, usage=fault != "no_usage")
        if fault == "malformed":
            body = body[: len(body) // 2]
        if billable:
            _bill(stats, ask, billed)
        if fault in _PROPER:
            _complete(stats, ask, input_tokens, output_tokens)
        if limiter is not None:
            limiter.refund_tokens(ask.max_tokens - output_tokens)
        headers = limiter.headers(anthropic=wire.provider == "anthropic") if limiter is not None else None
        return web.Response(body=body, headers=headers, content_type="application/json")

    def _run(self, wire: Wire, ask: AnswerRequest, fault: str | None, input_tokens: int) -> tuple[str, Finish, Usage]:
        """The model at work: the answer's text, how it ended, and what it bills (prompt cache included)."""
        text, finish, output_tokens, thinking = self._answer(ask, fault)
        cache_read, cache_write = self._cached(wire, ask)
        billed = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            thinking=thinking,
            cache_read=cache_read,
            cache_write=cache_write,
        )
        return text, finish, billed

    def _answer(self, ask: AnswerRequest, fault: str | None) -> tuple[str, Finish, int, int]:
        """The text, how it ended, the output tokens billed for it, and how many of those were thinking."""
        if fault == "empty":
            return "", "stop", 0, 0
        if fault == "truncated":
            return "", "truncated", ask.max_tokens, ask.max_tokens
        if fault == "refusal":
            return "", "refusal", min(count_tokens(REFUSAL_TEXT), ask.max_tokens), 0
        thinking = thinking_tokens(ask.thinks, ask.effort, ask.thinking_budget, self.spec.thinking_tokens)
        if thinking >= ask.max_tokens:
            # The thinking used the whole output limit: no text, all of it billed.
            return "", "truncated", ask.max_tokens, ask.max_tokens
        answer_fn = self.answer_fn or self._spec_answer_fn
        raw = answer_fn(ask)
        if ask.structured:
            raw = structured_score_text(raw)
        text, output_tokens, truncated = fit_tokens(raw, ask.max_tokens - thinking)
        if fault == "filtered":
            # Filtered after the model wrote it: its tokens are billed, none is shown.
            return "", "filtered", output_tokens + thinking, thinking
        return text, "length" if truncated else "stop", output_tokens + thinking, thinking

    def _cached(self, wire: Wire, ask: AnswerRequest) -> tuple[int, int]:
        """(cache read, cache write) prompt tokens of a request the model runs (emulator/caching.py)."""
        if wire.provider != "anthropic":
            return self._cache.implicit(ask.model, ask.messages), 0
        if ask.cache_breakpoint is None:
            return 0, 0
        prefix, tokens = ask.cache_breakpoint
        return self._cache.explicit(ask.model, prefix, tokens, min_tokens=anthropic_min_tokens(ask.model))

    def _cache_begun(self, ask: AnswerRequest) -> None:
        # The model ran (the answer is ready, or ran on for a client that left): its cache write is readable.
        if ask.cache_breakpoint is not None:
            self._cache.begun(ask.model, ask.cache_breakpoint[0])

    def _overloaded(self) -> bool:
        elapsed_s = self._clock() - self._started
        for overload in self.spec.overloads:
            if overload.start_s <= elapsed_s < overload.start_s + overload.duration_s:
                return overload.rate >= 1.0 or self._overload_rng.random() < overload.rate
        return False

    def _draw_fault(self) -> str | None:
        draw = self._fault_rng.random()
        for edge, fault in zip(self._fault_edges, FAULT_KINDS, strict=True):
            if draw < edge:
                return fault
        return None

    # --- routes --------------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, WIRES["openai"], None)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, WIRES["anthropic"], None)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        wire = WIRES["azure"]
        if wire.has_auth(request.headers) and not request.query.get("api-version"):
            # Azure refuses a request without its api-version query parameter (the key is checked first).
            self._bad_requests += 1
            return _error_response(wire, "invalid", "Missing required query parameter 'api-version'")
        return await self.handle(request, wire, request.match_info["deployment"])

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method == "batchGenerateContent":
            return await batch_gemini.create(self, request, model)
        if method != "generateContent":
            self._bad_requests += 1
            return _error_response(WIRES["gemini"], "not_found", f"method {method!r} is not emulated")
        return await self.handle(request, WIRES["gemini"], model)

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=_stats_encoder.encode(self.stats()), content_type="application/json")

    async def _post_reset(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            spec = _spec_decoder.decode(body) if body.strip() else None
        except msgspec.DecodeError as exc:
            return web.Response(status=400, text=f"invalid emulator spec: {exc}")
        self.reset_stats(spec)
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    def app(self) -> web.Application:
        """The aiohttp application serving the three providers and the control endpoints."""
        # Batch submissions are large: Anthropic takes up to 256 MB in one body (aiohttp's default is 1 MiB).
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        # google-genai calls /v1beta/... by default and /v1/... with api_version="v1".
        app.router.add_post("/v1beta/models/{target}", self._gemini)
        app.router.add_post("/v1/models/{target}", self._gemini)
        for batch_api in (batch_openai, batch_anthropic, batch_gemini):
            batch_api.add_routes(app, self)
        # Gemini's batches under /v1 (google-genai's default version) share their paths with OpenAI's.
        gemini_routes = batch_gemini.shared_routes(self)
        for path, openai_handler in batch_openai.shared_routes(self).items():
            app.router.add_get(path, by_key_header(openai_handler, gemini_routes[path]))
        app.router.add_get("/_emulator/stats", self._get_stats)
        app.router.add_post("/_emulator/reset", self._post_reset)
        return app


def _bill(stats: ModelStats, ask: AnswerRequest, billed: Usage) -> None:
    stats.billed_requests += 1
    key = content_key(ask)
    stats.billed_keys[key] = stats.billed_keys.get(key, 0) + 1
    stats.billed_input_tokens += billed.input_tokens
    stats.billed_output_tokens += billed.output_tokens
    stats.billed_reasoning_tokens += billed.thinking
    stats.billed_cache_read_tokens += billed.cache_read
    stats.billed_cache_write_tokens += billed.cache_write


def _complete(stats: ModelStats, ask: AnswerRequest, input_tokens: int, output_tokens: int) -> None:
    stats.completed += 1
    stats.input_tokens += input_tokens
    stats.output_tokens += output_tokens
    key = content_key(ask)
    seen = stats.completed_keys.get(key, 0)
    stats.completed_keys[key] = seen + 1
    stats.duplicates += seen > 0


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _error_response(wire: Wire, kind: str, message: str, limiter: ModelLimiter | None = None) -> web.Response:
    status, body = wire.error(kind, message)  # type: ignore[arg-type]
    headers = limiter.headers(anthropic=wire.provider == "anthropic") if limiter is not None else None
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


def _rate_limited(wire: Wire, limiter: ModelLimiter, model: str, wait_s: float) -> web.Response:
    status, body = wire.error(
        "rate_limit",
        f"Rate limit reached for {model}. Please try again in {math.ceil(wait_s * 1000)}ms.",
        retry_after_s=wait_s,
    )
    headers = limiter.headers(anthropic=wire.provider == "anthropic")
    headers["retry-after"] = str(math.ceil(wait_s))
    headers["retry-after-ms"] = str(math.ceil(wait_s * 1000))
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


@asynccontextmanager
async def run_emulator(
    spec: EmulatorSpec,
    answer_fn: AnswerFn | None = None,
    *,
    port: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Emulator]:
    """Serve an emulated provider on 127.0.0.1 (a free port when `port` is 0) for the block's duration.

    `clock` drives the rate limiter; tests pass a fake one to step time by hand.

        async with run_emulator(EmulatorSpec(models={"m": ModelLimits(rpm=600)})) as emu:
            client = ChatClient("openai", api_key="k", base_url=emu.base_url("openai"))
    """
    emulator = Emulator(spec, answer_fn, clock)
    # handler_cancellation: a client that gives up (timeout, reset) ends its hung handler.
    runner = web.AppRunner(emulator.app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        emulator.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield emulator
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
        sock.close()
