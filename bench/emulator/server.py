"""The emulator's HTTP server: routes, the per-request path, and `run_emulator`.

One request: auth header -> parse -> rate limiter (429 pays nothing) -> fault draw
-> answer -> latency sleep -> TPM refund of unused max_tokens -> response with
x-ratelimit headers. Per-request work is kept small (no logging, msgspec only,
access log off) so a client in another process can push well over 2,000 req/s
through it on 2 cores.
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

from bench.emulator.answers import answer_fn_for
from bench.emulator.limiter import ModelLimiter
from bench.emulator.spec import AnswerFn, EmulatorSpec
from bench.emulator.stats import EmulatorStats, ModelStats, content_key, snapshot
from bench.emulator.tokens import count_prompt_tokens, fit_tokens
from bench.emulator.wire import WIRES, Wire

_FAULTS = ("error", "reset", "hang", "malformed", "empty")
_stats_encoder = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(EmulatorSpec)
# SO_LINGER with a zero timeout: close() sends RST, as a crashed server or a proxy reset does.
_LINGER_RST = struct.pack("ii", 1, 0)


class Emulator:
    """A running emulated provider. `answer_fn`, when set, answers instead of `spec.answers`."""

    def __init__(self, spec: EmulatorSpec, answer_fn: AnswerFn | None, clock: Callable[[], float]):
        self.url = ""
        self.answer_fn = answer_fn
        self._clock = clock
        self._configure(spec)
        self._models: dict[str, ModelStats] = {}
        self._unauthorized = 0
        self._bad_requests = 0

    def _configure(self, spec: EmulatorSpec) -> None:
        self.spec = spec
        self._spec_answer_fn = answer_fn_for(spec)
        self._limiters: dict[str, ModelLimiter | None] = {}
        self._latency_rng = random.Random(spec.seed)
        self._fault_rng = random.Random(spec.seed + 1)
        f = spec.faults
        # Cumulative thresholds, in `_FAULTS` order, for one uniform draw per request.
        self._fault_edges = tuple(accumulate((f.error_rate, f.reset_rate, f.hang_rate, f.malformed_rate, f.empty_rate)))

    def base_url(self, provider: str) -> str:
        """The base_url a client of `provider` should use (OpenAI's includes /v1, as in its SDK)."""
        return self.url + "/v1" if provider == "openai" else self.url

    def stats(self) -> EmulatorStats:
        """A copy of the counters so far."""
        return snapshot(self._models, self._unauthorized, self._bad_requests)

    def reset_stats(self, spec: EmulatorSpec | None = None) -> None:
        """Back to a fresh provider: zero counters, full buckets; with `spec`, new limits and faults too."""
        self._configure(spec or self.spec)
        self._models = {}
        self._unauthorized = self._bad_requests = 0

    # --- the request path ---------------------------------------------------------------------

    def _limiter(self, model: str) -> ModelLimiter | None:
        try:
            return self._limiters[model]
        except KeyError:
            limits = self.spec.limits_for(model)
            limiter = ModelLimiter(limits, self._clock) if limits.rpm or limits.tpm else None
            self._limiters[model] = limiter
            return limiter

    def _latency_s(self, output_tokens: int) -> float:
        latency = self.spec.latency
        base_ms = latency.median_ms
        if latency.sigma > 0 and base_ms > 0:
            base_ms *= math.exp(latency.sigma * self._latency_rng.gauss(0.0, 1.0))
        return (base_ms + latency.ms_per_output_token * output_tokens) / 1000.0

    async def handle(self, request: web.Request, wire: Wire, path_model: str | None) -> web.StreamResponse:
        if not wire.has_auth(request.headers):
            self._unauthorized += 1
            return _error_response(wire, "auth", "missing API key header")
        body = await request.read()
        try:
            ask = wire.parse(body, path_model)
        except (msgspec.DecodeError, ValueError) as exc:
            self._bad_requests += 1
            return _error_response(wire, "invalid", f"invalid request body: {exc}")

        model = ask.model
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = ModelStats()
        stats.received += 1
        input_tokens = count_prompt_tokens(ask.messages)
        limiter = self._limiter(model)
        if limiter is not None:
            wait_s = limiter.admit(input_tokens + ask.max_tokens)
            if wait_s > 0.0:
                stats.rejected_429 += 1
                return _rate_limited(wire, limiter, model, wait_s)
        stats.accepted += 1

        fault = self._draw_fault() if self._fault_edges[-1] > 0.0 else None
        if fault is not None:
            stats.faults += 1
            if fault in ("error", "reset") and limiter is not None:
                limiter.refund_tokens(ask.max_tokens)
            if fault == "error":
                kind = "server" if self._fault_rng.random() < 0.5 else "unavailable"
                return _error_response(wire, kind, "injected fault: the server had an error", limiter)
            if fault == "reset":
                _reset_connection(request)
                return web.Response(status=500)  # never written: the connection is gone
            if fault == "hang":
                # Then answer normally, for a client patient enough to still be there.
                await asyncio.sleep(self.spec.faults.hang_s)
                fault = None

        answer_fn = self.answer_fn or self._spec_answer_fn
        text = "" if fault == "empty" else answer_fn(ask)
        text, output_tokens, truncated = fit_tokens(text, ask.max_tokens)
        delay_s = self._latency_s(output_tokens)
        if delay_s > 0.0:
            await asyncio.sleep(delay_s)
        body = wire.answer(ask, text, truncated, input_tokens, output_tokens)
        if fault == "malformed":
            body = body[: len(body) // 2]
        elif fault is None:
            stats.completed += 1
            stats.input_tokens += input_tokens
            stats.output_tokens += output_tokens
            key = content_key(ask)
            seen = stats.completed_keys.get(key, 0)
            stats.completed_keys[key] = seen + 1
            stats.duplicates += seen > 0
        if limiter is not None:
            limiter.refund_tokens(ask.max_tokens - output_tokens)
        headers = limiter.headers(anthropic=wire.provider == "anthropic") if limiter is not None else None
        return web.Response(body=body, headers=headers, content_type="application/json")

    def _draw_fault(self) -> str | None:
        draw = self._fault_rng.random()
        for edge, fault in zip(self._fault_edges, _FAULTS):
            if draw < edge:
                return fault
        return None

    # --- routes --------------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, WIRES["openai"], None)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, WIRES["anthropic"], None)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
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
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1beta/models/{target}", self._gemini)
        app.router.add_get("/_emulator/stats", self._get_stats)
        app.router.add_post("/_emulator/reset", self._post_reset)
        return app


def _error_response(
    wire: Wire, kind: str, message: str, limiter: ModelLimiter | None = None
) -> web.Response:
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
