"""Throughput of API concurrency: the engine's lanes against the provider emulator.

    python -m bench.throughput --requests 1200 --rpm 1200 --latency-ms 300 --latency-sigma 0.5 \
        --concurrency 16 64 --baseline gather --json out.json --plot out.png

The emulator runs in a child process (engine and emulator each get a core) and
enforces `--rpm/--tpm` per emulated teacher; `--client-rpm/--client-tpm` tell the
engine other limits, to measure how it copes with a wrong configuration. Each run
reports the wall time next to `bound_s`, the shortest wall time the limits allow,
so `efficiency = bound_s / wall_s` is a ratio from one run. The bound is that of
the calls that completed (all of them when none failed), so a client that fails
calls gets no credit for them:

- rate: a bucket starts full (`limit * burst_s / 60`), so the last request of n can be
  admitted at `(n - burst) / rate`, and still needs a median latency to come back;
  for TPM, n is the tokens the completed calls really used (input + output);
- concurrency: `n * mean latency / C` with C calls in flight (lognormal mean
  `median * exp(sigma^2 / 2)`);
- TPM reservation: a call holds `input + max_tokens` until it answers (the way
  OpenAI counts), so a bucket of B tokens carries at most `B - (input + max_tokens)`
  unused max_tokens at once, which caps the rate at that over `latency * unused`.

Requests stream through a bounded memory object stream to C workers per teacher, so
memory grows with calls in flight, not with `--requests`; peak RSS is reported.

Realistic scenarios: `--quota-requests N` (the first teacher's account runs out after
N billed requests; the others must finish), `--overload START DURATION` (every request
in that window gets the provider's 503/529; the bound adds the window, dead time for
a run still going), `--no-tpm-refund` (TPM charged prompt + max_tokens, never
refunded, as Azure counts), `--bill-abandoned` (a call the client gave up on is billed
anyway).
Each run then counts `duplicated` (answers the emulator produced twice for the same
request) and `billed_unrecorded` (requests the emulator billed that the client has no
record of, neither as billed nor as possibly billed, matched per request by content
key for the engine; the naive clients keep no such record and are compared by totals);
both must stay 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from array import array
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

import aiohttp
import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from adapters.client import ChatClient
from bench import baselines
from core.calls import ChatRequest, ChatResult, Message, ProviderName
from emulator import (
    AnswerRequest,
    Billing,
    EmulatorSpec,
    EmulatorStats,
    Faults,
    Latency,
    ModelLimits,
    Overload,
    content_key,
    start_emulator_process,
)
from engine.budget import CallTab
from engine.lane import Lane, LaneLimits

Mode = Literal["engine", "gather", "sequential"]
WIRES: tuple[ProviderName, ...] = ("openai", "anthropic", "gemini")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYSTEM = Message("system", "You are a careful teacher. Solve the problem step by step, then give the final answer.")


class Settings(msgspec.Struct, kw_only=True):
    """Everything one benchmark invocation was asked for (echoed into the JSON)."""

    requests: int
    rpm: float | None
    tpm: float | None
    burst_s: float
    latency_ms: float
    latency_sigma: float
    ms_per_token: float
    fail_rate: float
    reset_rate: float
    hang_rate: float
    hang_s: float
    concurrency: list[int]
    providers: int
    client_rpm: float | None
    client_tpm: float | None
    max_tokens: int
    output_tokens: int | None
    timeout_s: float
    max_attempts: int
    baseline: list[str]
    sequential_requests: int
    wire: str
    no_rate_headers: bool
    seed: int
    quota_requests: int | None = None
    overload: list[float] | None = None  # [start_s, duration_s]
    no_tpm_refund: bool = False
    bill_abandoned: bool = False


class RunResult(msgspec.Struct, kw_only=True):
    """One run: a mode at a concurrency. `lost`, `duplicated` and `billed_unrecorded` must be 0;
    `server_*` is the emulator's view, `client_*` what the client recorded."""

    mode: Mode
    concurrency: int
    requests: int
    completed: int
    failed: int
    lost: int
    wall_s: float
    req_per_s: float
    out_tokens_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    http_429: int
    retries: int
    bound_s: float
    efficiency: float
    binding: str
    server_completed: int
    duplicated: int
    # Requests the emulator billed, and the client's record of them: answers that came back
    # billed (usable or not) and attempts it counts as possibly billed (sent, never answered).
    server_billed: int
    client_billed: int
    client_possibly_billed: int
    billed_unrecorded: int
    quota_refused: int
    overloaded: int
    peak_rss_mb: float
    # CPU time of this (the client's) process per call: the engine's own cost.
    cpu_ms_per_call: float
    errors: list[str] = []


class Tally:
    """What the caller saw of each call; latencies in a compact array (8 bytes per call)."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.retries = 0
        self.output_tokens = 0
        self.latencies_s = array("d")
        self.errors: list[str] = []
        # Billed answers and possibly billed attempts the client knows of (the engine's lanes).
        self.billed = 0
        self.possibly_billed = 0
        # Content keys (the emulator's `content_key`) of the requests the engine has a
        # billed or possibly billed record of: matched per request against what the
        # emulator billed, since totals let a possibly billed attempt that was never
        # billed hide a billed one that went unrecorded.
        self.recorded_keys: set[str] = set()

    def record(self, completed: bool, latency_s: float, output_tokens: int, retries: int) -> None:
        self.retries += retries
        if completed:
            self.completed += 1
            self.output_tokens += output_tokens
            self.latencies_s.append(latency_s)
        else:
            self.failed += 1


# --- requests -------------------------------------------------------------------------------


def load_questions(limit: int = 2000) -> list[str]:
    """GSM8K questions from ../shared/data when present, else synthetic ones of similar length."""
    path = SHARED_DATA / "gsm8k" / "train.jsonl"
    if path.is_file():
        with path.open() as lines:
            return [json.loads(line)["question"] for _, line in zip(range(limit), lines, strict=False)]
    return [
        f"A shop sells {i % 17 + 2} boxes of {i % 9 + 3} pencils each day for {i % 5 + 2} days. "
        "How many pencils does it sell in total?"
        for i in range(limit)
    ]


def model_name(teacher: int) -> str:
    return f"teacher-{teacher}"


def teacher_requests(
    questions: list[str], teacher: int, teachers: int, total: int, max_tokens: int
) -> Iterator[ChatRequest]:
    """Teacher `teacher`'s share of `total` requests, built lazily; each prompt is unique."""
    for i in range(teacher, total, teachers):
        user = Message("user", f"[{i}] {questions[i % len(questions)]}")
        yield ChatRequest(model=model_name(teacher), messages=(SYSTEM, user), max_tokens=max_tokens)


def wire_of(teacher: int, wire: str) -> ProviderName:
    return WIRES[teacher % len(WIRES)] if wire == "mixed" else wire  # type: ignore[return-value]


def request_content_key(provider: ProviderName, request: ChatRequest) -> str:
    """The emulator's `content_key` of `request` sent over `provider`'s wire."""
    return content_key(
        AnswerRequest(
            provider=provider,
            model=request.model,
            messages=[(m.role, m.content) for m in request.messages],
            max_tokens=request.max_tokens,
            # Unset sampling reaches the model at the providers' default, 1.0, as the emulator's wires read it.
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
        )
    )


def billed_unrecorded(server: EmulatorStats, tally: Tally, mode: Mode) -> int:
    """Requests the emulator billed that the client has no record of (see the module docstring)."""
    if mode != "engine":
        return max(server.total.billed_requests - tally.billed - tally.possibly_billed, 0)
    return sum(n for m in server.models.values() for key, n in m.billed_keys.items() if key not in tally.recorded_keys)


# --- the bound ------------------------------------------------------------------------------


def rate_bound_s(units: float, per_minute: float | None, burst_s: float = 1.0) -> float:
    """Shortest time `units` (requests or tokens) fit through a bucket refilling at `per_minute`, starting full.

    The bucket holds `per_minute * burst_s / 60` (at least one unit), as the emulator's does.
    """
    if not per_minute:
        return 0.0
    burst = max(1.0, per_minute * burst_s / 60.0)
    return max(0.0, units - burst) / (per_minute / 60.0)


def bound_s(
    s: Settings, requests: int, concurrency: int, input_tokens: float, output_tokens: float
) -> tuple[float, str]:
    """The shortest wall time one teacher's limits allow for `requests` calls, and what binds.

    `input_tokens`/`output_tokens` are per completed call, as the emulator counted them.
    """
    median_s = s.latency_ms / 1000.0
    output_s = s.ms_per_token * output_tokens / 1000.0
    mean_s = median_s * math.exp(s.latency_sigma**2 / 2) + output_s
    tail_s = median_s + output_s
    bounds = {"latency": tail_s, "concurrency": requests * mean_s / concurrency}
    if s.rpm:
        bounds["rpm"] = rate_bound_s(requests, s.rpm, s.burst_s) + tail_s
    if s.tpm:
        capacity = s.tpm * s.burst_s / 60.0
        # Without refunds (Azure) every call keeps its whole max_tokens charged.
        used = input_tokens + (s.max_tokens if s.no_tpm_refund else output_tokens)
        bounds["tpm"] = max(0.0, requests * used - capacity) / (s.tpm / 60.0) + tail_s
        # A call holds input + max_tokens of the bucket until it answers, so at most
        # (capacity - one charge) of unused max_tokens can be out at once: by Little's
        # law that caps the rate at that / (latency * unused tokens per call).
        unused = s.max_tokens - output_tokens
        headroom = capacity - (input_tokens + s.max_tokens)
        if unused > 0 and not s.no_tpm_refund:
            bounds["tpm-reserve"] = math.inf if headroom <= 0 else requests * mean_s * unused / headroom
    binding = max(bounds, key=bounds.__getitem__)
    bound = bounds[binding]
    if s.overload and bound > s.overload[0]:
        # Nothing gets through an overload window: a run still going when it opens loses all of it.
        return bound + s.overload[1], binding + "+overload"
    return bound, binding


def percentile_ms(sorted_s: list[float], q: float) -> float:
    if not sorted_s:
        return 0.0
    return 1000.0 * sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))]


# --- the emulator ---------------------------------------------------------------------------


def emulator_spec(s: Settings) -> EmulatorSpec:
    limits = ModelLimits(rpm=s.rpm, tpm=s.tpm, burst_s=s.burst_s, refund_unused_tokens=not s.no_tpm_refund)
    models = {model_name(k): limits for k in range(s.providers)}
    if s.quota_requests is not None:
        # Only the first teacher runs dry: the others must finish their share regardless.
        models[model_name(0)] = msgspec.structs.replace(limits, quota_requests=s.quota_requests)
    return EmulatorSpec(
        models=models,
        latency=Latency(median_ms=s.latency_ms, sigma=s.latency_sigma, ms_per_output_token=s.ms_per_token),
        faults=Faults(error_rate=s.fail_rate, reset_rate=s.reset_rate, hang_rate=s.hang_rate, hang_s=s.hang_s),
        billing=Billing(abandoned=s.bill_abandoned),
        overloads=[Overload(start_s=s.overload[0], duration_s=s.overload[1])] if s.overload else [],
        seed=s.seed,
        output_tokens=s.output_tokens,
    )


async def emulator_stats(session: aiohttp.ClientSession, url: str) -> EmulatorStats:
    async with session.get(f"{url}/_emulator/stats") as response:
        return msgspec.json.decode(await response.read(), type=EmulatorStats)


async def reset_emulator(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/_emulator/reset") as response:
        response.raise_for_status()


class WithoutRateHeaders:
    """A client whose results carry no rate-limit headers, like Gemini's: the lane must
    find the real limit from 429s alone."""

    def __init__(self, client: ChatClient):
        self._client = client

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        result = await self._client.complete(request, timeout_s=timeout_s)
        result.rate_limit = None
        return result


def base_url(url: str, provider: ProviderName) -> str:
    return url + "/v1" if provider == "openai" else url


# --- drivers --------------------------------------------------------------------------------


async def drive_engine(s: Settings, url: str, concurrency: int, questions: list[str], tally: Tally) -> None:
    """Every teacher's share through its own lane, C workers per lane pulling from a bounded stream."""
    limits = LaneLimits(
        rpm=s.client_rpm,
        tpm=s.client_tpm,
        max_in_flight=concurrency,
        timeout_s=s.timeout_s,
        max_attempts=s.max_attempts,
        burst_s=s.burst_s,
    )

    async def produce(send: MemoryObjectSendStream[ChatRequest], teacher: int) -> None:
        async with send:
            for request in teacher_requests(questions, teacher, s.providers, s.requests, s.max_tokens):
                # Fill every free place at once: `send` yields to the loop each time, so a
                # producer awaiting it per request refills one place per loop turn and, at
                # thousands of calls a second, starves the workers.
                try:
                    send.send_nowait(request)
                except anyio.WouldBlock:
                    await send.send(request)

    async def work(lane: Lane, provider: ProviderName, recv: MemoryObjectReceiveStream[ChatRequest]) -> None:
        async with recv:
            async for request in recv:
                tab = CallTab()
                outcome = await lane.call(request, tab=tab)
                result = outcome.result
                if result is not None or outcome.unusable is not None or tab.possibly_attempts:
                    tally.recorded_keys.add(request_content_key(provider, request))
                tally.record(
                    result is not None, outcome.elapsed_s, result.output_tokens if result else 0, outcome.retries
                )
                if outcome.error and len(tally.errors) < 5:
                    tally.errors.append(outcome.error)

    async with AsyncExitStack() as stack:
        lanes = []
        for k in range(s.providers):
            provider = wire_of(k, s.wire)
            client = await stack.enter_async_context(
                ChatClient(
                    provider,
                    api_key="bench",
                    base_url=base_url(url, provider),
                    max_connections=concurrency,
                    name=model_name(k),
                )
            )
            lanes.append(Lane(model_name(k), WithoutRateHeaders(client) if s.no_rate_headers else client, limits))
        async with anyio.create_task_group() as tg:
            for k, lane in enumerate(lanes):
                send, recv = anyio.create_memory_object_stream[ChatRequest](max_buffer_size=concurrency)
                tg.start_soon(produce, send, k)
                for _ in range(concurrency):
                    tg.start_soon(work, lane, wire_of(k, s.wire), recv.clone())
                recv.close()
        for lane in lanes:
            tally.billed += lane.stats.completed + lane.stats.unusable
            tally.possibly_billed += lane.stats.possibly_billed


async def drive_baseline(
    s: Settings, mode: Mode, url: str, concurrency: int, questions: list[str], tally: Tally
) -> None:
    """The naive clients, one per teacher, all teachers at once."""
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        for k in range(s.providers):
            provider = wire_of(k, s.wire)
            client = await stack.enter_async_context(
                ChatClient(
                    provider,
                    api_key="bench",
                    base_url=base_url(url, provider),
                    max_connections=concurrency,
                    name=model_name(k),
                )
            )
            total = s.sequential_requests if mode == "sequential" else s.requests
            requests = teacher_requests(questions, k, s.providers, total, s.max_tokens)
            if mode == "sequential":
                tg.start_soon(
                    lambda c=client, r=requests: baselines.sequential(
                        c, r, timeout_s=s.timeout_s, max_attempts=s.max_attempts, record=tally.record
                    )
                )
            else:
                tg.start_soon(
                    lambda c=client, r=requests: baselines.gather(
                        c,
                        r,
                        concurrency=concurrency,
                        timeout_s=s.timeout_s,
                        max_attempts=s.max_attempts,
                        record=tally.record,
                    )
                )


async def one_run(
    s: Settings, mode: Mode, url: str, concurrency: int, questions: list[str], session: aiohttp.ClientSession
) -> RunResult:
    """Reset the emulator (full buckets, zero counters), drive one mode, measure it."""
    await reset_emulator(session, url)
    tally = Tally()
    requests = s.sequential_requests if mode == "sequential" else s.requests
    started, cpu_started = time.monotonic(), time.process_time()
    if mode == "engine":
        await drive_engine(s, url, concurrency, questions, tally)
    else:
        await drive_baseline(s, mode, url, concurrency, questions, tally)
    wall_s = time.monotonic() - started
    cpu_s = time.process_time() - cpu_started
    if mode != "engine":
        tally.billed = tally.completed  # the naive clients keep no other record
    server = await emulator_stats(session, url)

    total = server.total
    input_tokens = total.input_tokens / total.completed if total.completed else 0.0
    output_tokens = total.output_tokens / total.completed if total.completed else 0.0
    # The bound of the work done: a client that fails calls does not get credit for them. The
    # busiest teacher's distinct answers, since one whose account ran dry did less than its share.
    per_teacher = max((len(m.completed_keys) for m in server.models.values()), default=0)
    bound, binding = bound_s(s, per_teacher, concurrency, input_tokens, output_tokens)
    latencies = sorted(tally.latencies_s)
    return RunResult(
        mode=mode,
        concurrency=concurrency,
        requests=requests,
        completed=tally.completed,
        failed=tally.failed,
        lost=requests - tally.completed - tally.failed,
        wall_s=round(wall_s, 3),
        req_per_s=round(tally.completed / wall_s, 2),
        out_tokens_per_s=round(tally.output_tokens / wall_s, 1),
        p50_ms=round(percentile_ms(latencies, 0.50), 1),
        p95_ms=round(percentile_ms(latencies, 0.95), 1),
        p99_ms=round(percentile_ms(latencies, 0.99), 1),
        http_429=total.rejected_429,
        retries=tally.retries,
        bound_s=round(bound, 3),
        efficiency=round(bound / wall_s, 3),
        binding=binding,
        server_completed=len({key for m in server.models.values() for key in m.completed_keys}),
        duplicated=total.duplicates,
        server_billed=total.billed_requests,
        client_billed=tally.billed,
        client_possibly_billed=tally.possibly_billed,
        billed_unrecorded=billed_unrecorded(server, tally, mode),
        quota_refused=total.quota_refused,
        overloaded=total.overloaded,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        cpu_ms_per_call=round(1000.0 * cpu_s / requests, 3),
        errors=tally.errors,
    )


async def run_all(s: Settings, url: str) -> list[RunResult]:
    """Every requested mode at every concurrency (sequential once: its concurrency is 1)."""
    questions = load_questions()
    plan: list[tuple[Mode, int]] = []
    for concurrency in s.concurrency:
        plan.append(("engine", concurrency))
        if "gather" in s.baseline:
            plan.append(("gather", concurrency))
    if "sequential" in s.baseline:
        plan.append(("sequential", 1))
    results = []
    async with aiohttp.ClientSession() as session:
        for mode, concurrency in plan:
            result = await one_run(s, mode, url, concurrency, questions, session)
            print(
                f"  {mode} C={concurrency}: {result.completed}/{result.requests} in {result.wall_s:.1f} s, "
                f"efficiency {result.efficiency:.3f}",
                file=sys.stderr,
            )
            results.append(result)
    return results


# --- output ---------------------------------------------------------------------------------


def machine_load() -> str:
    """`uptime`'s load averages and the core count, to read timings against."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def print_table(s: Settings, results: list[RunResult], load: str) -> None:
    from rich.console import Console
    from rich.table import Table

    limits = f"rpm={s.rpm or '-'} tpm={s.tpm or '-'}"
    if (s.client_rpm, s.client_tpm) != (s.rpm, s.tpm):
        limits += f" (engine told rpm={s.client_rpm or '-'} tpm={s.client_tpm or '-'})"
    table = Table(
        title=f"API concurrency: {s.providers} teacher(s), {limits}, "
        f"latency {s.latency_ms:g} ms sigma {s.latency_sigma:g}; {load}"
    )
    columns = (
        "mode",
        "C",
        "requests",
        "done",
        "failed",
        "lost",
        "dup",
        "billed unrec.",
        "wall s",
        "req/s",
        "out tok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "429s",
        "5xx",
        "retries",
        "bound s",
        "binds",
        "efficiency",
        "cpu ms/call",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("mode", "binds") else "right")
    for r in results:
        table.add_row(
            r.mode,
            str(r.concurrency),
            str(r.requests),
            str(r.completed),
            str(r.failed),
            str(r.lost),
            str(r.duplicated),
            str(r.billed_unrecorded),
            f"{r.wall_s:.2f}",
            f"{r.req_per_s:.1f}",
            f"{r.out_tokens_per_s:.0f}",
            f"{r.p50_ms:.0f}",
            f"{r.p95_ms:.0f}",
            f"{r.p99_ms:.0f}",
            str(r.http_429),
            str(r.overloaded),
            str(r.retries),
            f"{r.bound_s:.2f}",
            r.binding,
            f"{r.efficiency:.3f}",
            f"{r.cpu_ms_per_call:.2f}",
        )
    # Wide enough for every column when the output is a file or a pipe.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    print(f"peak RSS of the engine process: {max(r.peak_rss_mb for r in results):.0f} MB")
    for r in results:
        for error in r.errors[:2]:
            print(f"  {r.mode} C={r.concurrency} failure: {error}")


def write_plot(path: Path, results: list[RunResult]) -> None:
    """Throughput and p95 latency against concurrency, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in ("engine", "gather", "sequential"):
        runs = sorted((r for r in results if r.mode == mode), key=lambda r: r.concurrency)
        if not runs:
            continue
        xs = [r.concurrency for r in runs]
        left.plot(xs, [r.req_per_s for r in runs], marker="o", label=mode)
        right.plot(xs, [r.p95_ms for r in runs], marker="o", label=mode)
    left.set(xscale="log", xlabel="calls in flight (C)", ylabel="completed req/s", title="throughput")
    right.set(xscale="log", xlabel="calls in flight (C)", ylabel="p95 latency (ms)", title="p95 latency")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None, Path | None]:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--requests", type=int, default=1200)
    p.add_argument("--rpm", type=float, help="the emulator's real RPM per teacher (default: unlimited)")
    p.add_argument("--tpm", type=float, help="the emulator's real TPM per teacher (default: unlimited)")
    p.add_argument("--burst-s", type=float, default=1.0, help="seconds of traffic a limit bucket holds")
    p.add_argument("--latency-ms", type=float, default=300.0, help="median latency")
    p.add_argument("--latency-sigma", type=float, default=0.5, help="lognormal sigma (0: fixed)")
    p.add_argument("--ms-per-token", type=float, default=0.0, help="extra latency per output token")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of 500/503 answers")
    p.add_argument("--reset-rate", type=float, default=0.0, help="share of connection resets")
    p.add_argument("--hang-rate", type=float, default=0.0, help="share of answers that hang past the timeout")
    p.add_argument("--hang-s", type=float, help="how long a hang lasts (default: 3x --timeout-s)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[64], help="calls in flight per teacher")
    p.add_argument("--providers", type=int, default=1, help="emulated teachers, each with its own limits")
    p.add_argument("--client-rpm", type=float, help="the RPM the engine is told (default: --rpm)")
    p.add_argument("--client-tpm", type=float, help="the TPM the engine is told (default: --tpm)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--output-tokens", type=int, help="real answer length in tokens (default: a short echo)")
    p.add_argument("--timeout-s", type=float, default=10.0)
    p.add_argument("--max-attempts", type=int, default=6)
    p.add_argument("--baseline", nargs="+", choices=("sequential", "gather"), default=[])
    p.add_argument(
        "--sequential-requests", type=int, help="requests for the (slow) sequential baseline (default: --requests)"
    )
    p.add_argument(
        "--wire", choices=(*WIRES, "mixed"), default="openai", help="provider wire format (mixed: teachers take turns)"
    )
    p.add_argument(
        "--no-rate-headers",
        action="store_true",
        help="hide the rate-limit headers from the engine (it must adapt from 429s alone)",
    )
    p.add_argument(
        "--quota-requests", type=int, help="the first teacher's account runs out after this many billed requests"
    )
    p.add_argument(
        "--overload",
        type=float,
        nargs=2,
        metavar=("START_S", "DURATION_S"),
        help="an overload burst: every request in this window gets the provider's 503/529",
    )
    p.add_argument(
        "--no-tpm-refund",
        action="store_true",
        help="TPM charged prompt + max_tokens and never refunded (Azure OpenAI's way)",
    )
    p.add_argument(
        "--bill-abandoned", action="store_true", help="bill calls the client gave up on (timeouts), as the providers do"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="write a PNG of throughput and p95 against concurrency here")
    a = p.parse_args(argv)
    if a.requests < 1 or a.providers < 1 or min(a.concurrency) < 1:
        p.error("--requests, --providers and --concurrency must be >= 1")
    if a.overload and (a.overload[0] < 0 or a.overload[1] <= 0):
        p.error("--overload START_S DURATION_S: START_S must be >= 0 and DURATION_S > 0")
    if a.quota_requests is not None and a.quota_requests < 0:
        p.error("--quota-requests must be >= 0")
    settings = Settings(
        requests=a.requests,
        rpm=a.rpm,
        tpm=a.tpm,
        burst_s=a.burst_s,
        latency_ms=a.latency_ms,
        latency_sigma=a.latency_sigma,
        ms_per_token=a.ms_per_token,
        fail_rate=a.fail_rate,
        reset_rate=a.reset_rate,
        hang_rate=a.hang_rate,
        hang_s=a.hang_s or 3 * a.timeout_s,
        concurrency=a.concurrency,
        providers=a.providers,
        client_rpm=a.client_rpm if a.client_rpm is not None else a.rpm,
        client_tpm=a.client_tpm if a.client_tpm is not None else a.tpm,
        max_tokens=a.max_tokens,
        output_tokens=a.output_tokens,
        timeout_s=a.timeout_s,
        max_attempts=a.max_attempts,
        baseline=a.baseline,
        sequential_requests=a.sequential_requests or a.requests,
        wire=a.wire,
        no_rate_headers=a.no_rate_headers,
        seed=a.seed,
        quota_requests=a.quota_requests,
        overload=a.overload,
        no_tpm_refund=a.no_tpm_refund,
        bill_abandoned=a.bill_abandoned,
    )
    return settings, a.json, a.plot


def main(argv: list[str] | None = None) -> list[RunResult]:
    """Run the benchmark from the command line (or a test); returns the runs."""
    settings, json_path, plot_path = parse_args(argv)
    load_before = machine_load()
    with start_emulator_process(emulator_spec(settings)) as url:
        results = anyio.run(run_all, settings, url)
    load = f"{load_before} at start, {machine_load().split(' on ')[0]} at end"
    print_table(settings, results, load)
    if json_path:
        document = {"settings": settings, "load": load, "runs": results}
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(document)))
        print(f"wrote {json_path}")
    if plot_path:
        write_plot(plot_path, results)
        print(f"wrote {plot_path}")
    return results


if __name__ == "__main__":
    main()
