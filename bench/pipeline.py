"""How close the teach stage runs to the bound its teachers' rate limits allow; or, with `--batch`,
what a batch teacher costs and takes against the same run with every teacher sync.

    python -m bench.pipeline --mistakes 300 --rpm 600 450 300 --latency-ms 300 --json out.json
    python -m bench.pipeline --batch --mistakes 100 --batch-delay-s 10 --json batch.json

Three (or `--teachers`) emulated teachers, each with its own RPM/TPM, run the
whole FAIR graph (rationale, feedback, cross-review) over real SVAMP questions
(../shared/data when present, else the demo questions, varied to stay distinct).
The bound is the busiest teacher's time at its limits plus the critical path of
the last sample (a rationale, then its review); efficiency = bound / wall.

`--batch` runs the same mistakes twice on fresh emulators and stores: every teacher
sync, then the `--batch-teachers` (default t0, OpenAI) in batch mode and the rest
sync. It reports each run's wall time and USD (ours, from the store, and the
emulator's billed tokens) and whether both decided the same dataset. The emulator
finishes a batch's requests evenly over `--batch-delay-s` (real batches take minutes
to hours: scale the wall figures by that, not the USD).
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec
from rich.console import Console
from rich.table import Table

from accounting import ledger
from bench.throughput import rate_bound_s
from core.config import load_config
from core.records import Mistake, Question, mistake_from
from core.samples import DecidedSample
from core.tables import fmt_usd
from emulator import EmulatorSpec, Latency, ModelLimits, run_emulator
from emulator.fair_script import FairScript
from emulator.stats import EmulatorStats
from reports.cost import decided_samples, ledger_connection
from stages.context import RunContext
from stages.teach import list_producer, run_teach
from store.batches import batch_records
from store.calls import Store
from tasks import load_split

T = TypeVar("T")
_PROVIDERS = ("openai", "gemini", "anthropic")
_SHARED_SVAMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "svamp"


class ModeRun(msgspec.Struct, kw_only=True):
    """One teach run of `--batch`: which teachers sent batches, its wall time, what it cost per teacher."""

    batch_teachers: list[str]
    wall_s: float
    usd: float | None
    usd_per_teacher: dict[str, float | None]
    calls: int
    batch_requests: int
    batches: int
    http_429: int
    duplicates: int


class BatchComparison(msgspec.Struct, kw_only=True):
    """`--batch`: the same mistakes all sync, then with batch teachers; `same_dataset` if both decided alike."""

    mistakes: int
    teachers: int
    batch_delay_s: float
    sync: ModeRun
    batch: ModeRun
    same_dataset: bool


class PipelineRun(msgspec.Struct, kw_only=True):
    mistakes: int
    teachers: int
    calls: int
    wall_s: float
    bound_s: float
    efficiency: float
    http_429: int
    duplicates: int
    per_teacher: dict[str, dict[str, float]]


def questions(n: int) -> list[Question]:
    """`n` distinct SVAMP questions: the real train split, cycled with a variant tag past its end."""
    source = str(_SHARED_SVAMP) if _SHARED_SVAMP.is_dir() else "demo"
    base = load_split("svamp", source, "train")
    out = []
    for i in range(n):
        q = base[i % len(base)]
        tag = "" if i < len(base) else f" (variant {i // len(base)})"
        out.append(msgspec.structs.replace(q, id=str(i), question=q.question + tag))
    return out


def mistakes_of(qs: list[Question]) -> list[Mistake]:
    return [mistake_from(q, "Adding everything up, the answer is 3.", "3") for q in qs]


def write_config(
    tmp: Path,
    n_teachers: int,
    rpm: list[float],
    tpm: list[float | None],
    in_flight: int,
    emu,
    mistakes_file: Path,
    batch: frozenset[int] = frozenset(),
) -> Path:
    lines = [
        '[run]\nname = "bench"\nout_dir = "run"\n',
        f'[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes_file}"\n',
    ]
    for i in range(n_teachers):
        provider = _PROVIDERS[i % 3]
        lines.append(
            f'[[teachers]]\nname = "t{i}"\nprovider = "{provider}"\nmodel = "model-{i}"\n'
            f'base_url = "{emu.base_url(provider)}"\napi_key_env = "BENCH_KEY"\n'
            f"rpm = {rpm[i]}\nmax_in_flight = {in_flight}\nprice_in_per_mtok = 0.5\nprice_out_per_mtok = 1.5\n"
            + (f"tpm = {tpm[i]}\n" if tpm[i] else "")
            # Batches gather for 1 s and are polled every 0.2 s: the emulator's batches take seconds, not hours.
            + ('mode = "batch"\nbatch_window_s = 1.0\nbatch_poll_s = 0.2\n' if i in batch else "")
        )
    lines.append("[review]\nsamples_in_flight = 512\n")
    path = tmp / "bench.toml"
    path.write_text("\n".join(lines))
    return path


def authors_json(mistakes: list[Mistake], path: Path) -> Path:
    rows = [
        {
            "id": int(m.id),
            "question": m.question,
            "gold_answer": m.gold,
            "student_wrong_pred": m.student_answer,
            "student_wrong_final_answer": "3",
        }
        for m in mistakes
    ]
    path.write_bytes(msgspec.json.encode(rows))
    return path


def _limits(args: argparse.Namespace) -> tuple[list[float], list[float | None]]:
    """Each teacher's RPM and TPM, the command line's lists cycled."""
    n_t = args.teachers
    return (args.rpm * n_t)[:n_t], ((args.tpm or [None]) * n_t)[:n_t]


async def _teach_once(
    args: argparse.Namespace, qs: list[Question], batch: frozenset[int], read: Callable[[sqlite3.Connection], T]
) -> tuple[float, EmulatorStats, T]:
    """One teach run of `qs`' mistakes on a fresh emulator and store (teachers in `batch` send batches).

    Returns its wall time, the emulator's counters and `read` of the finished store.
    """
    import os

    from emulator.spec import BatchBehaviour

    os.environ.setdefault("BENCH_KEY", "bench")
    n_t = args.teachers
    rpm, tpm = _limits(args)
    mistakes = mistakes_of(qs)
    spec = EmulatorSpec(
        models={f"model-{i}": ModelLimits(rpm=rpm[i], tpm=tpm[i]) for i in range(n_t)},
        latency=Latency(median_ms=args.latency_ms, sigma=args.latency_sigma),
        batch=BatchBehaviour(delay_s=args.batch_delay_s),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        async with run_emulator(spec, FairScript(qs)) as emu:
            cfg_path = write_config(
                tmp_path, n_t, rpm, tpm, args.max_in_flight, emu, authors_json(mistakes, tmp_path / "m.json"), batch
            )
            ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
            ctx.prepare()
            async with Store.open(ctx.store_path) as store:
                start = time.perf_counter()
                await run_teach(ctx, {"svamp": list_producer(mistakes)}, questions=qs, store=store)
                wall = time.perf_counter() - start
            stats = emu.stats()
            conn = ledger_connection(ctx.store_path)
            try:
                figures = read(conn)
            finally:
                conn.close()
    return wall, stats, figures


async def measure(args: argparse.Namespace) -> PipelineRun:
    """The teach stage's wall time against its rate-limit bound, every teacher sync."""
    n_t = args.teachers
    rpm, tpm = _limits(args)
    wall, stats, _ = await _teach_once(args, questions(args.mistakes), frozenset(), lambda conn: None)
    per_teacher = {}
    bound = 0.0
    mean_latency_s = args.latency_ms / 1000 * math.exp(args.latency_sigma**2 / 2)
    for i in range(n_t):
        m = stats.models[f"model-{i}"]
        calls = m.completed
        tokens = m.input_tokens + m.output_tokens
        b = max(rate_bound_s(calls, rpm[i]), rate_bound_s(tokens, tpm[i]), calls * mean_latency_s / args.max_in_flight)
        per_teacher[f"t{i}"] = {"calls": calls, "bound_s": b, "rpm": rpm[i], "http_429": m.rejected_429}
        bound = max(bound, b)
    # The last sample's rationale and then its review cannot overlap.
    bound += 2 * args.latency_ms / 1000
    return PipelineRun(
        mistakes=args.mistakes,
        teachers=n_t,
        calls=stats.total.completed,
        wall_s=wall,
        bound_s=bound,
        efficiency=bound / wall,
        http_429=stats.total.rejected_429,
        duplicates=stats.total.duplicates,
        per_teacher=per_teacher,
    )


class _StoreFigures(msgspec.Struct, kw_only=True):
    calls: int
    usd: float | None
    usd_per_teacher: dict[str, float | None]
    batches: int
    samples: list[DecidedSample]


def _store_figures(conn: sqlite3.Connection) -> _StoreFigures:
    rows = ledger.stage_ledger(conn)
    teachers = sorted({r.teacher for r in rows})
    return _StoreFigures(
        calls=ledger.totals(rows).calls,
        usd=ledger.totals(rows).usd,
        usd_per_teacher={t: ledger.totals([r for r in rows if r.teacher == t]).usd for t in teachers},
        batches=len(batch_records(conn)),
        samples=decided_samples(conn, "svamp"),
    )


async def _mode_run(
    args: argparse.Namespace, qs: list[Question], batch: frozenset[int]
) -> tuple[ModeRun, list[DecidedSample]]:
    """One teach run for `--batch`: its figures and decided samples."""
    wall, stats, figures = await _teach_once(args, qs, batch, _store_figures)
    run = ModeRun(
        batch_teachers=[f"t{i}" for i in sorted(batch)],
        wall_s=wall,
        usd=figures.usd,
        usd_per_teacher=figures.usd_per_teacher,
        calls=figures.calls,
        batch_requests=stats.total.batch_requests,
        batches=figures.batches,
        http_429=stats.total.rejected_429,
        duplicates=stats.total.duplicates,
    )
    return run, figures.samples


async def compare_batch(args: argparse.Namespace) -> BatchComparison:
    """The same mistakes all sync, then with `args.batch_teachers` in batch mode (see the module docstring)."""
    qs = questions(args.mistakes)
    sync, sync_samples = await _mode_run(args, qs, frozenset())
    batch, batch_samples = await _mode_run(args, qs, frozenset(args.batch_teachers))
    # The scripted teachers answer by content, so both runs must decide every sample alike.
    same = [_decision(s) for s in sync_samples] == [_decision(s) for s in batch_samples]
    return BatchComparison(
        mistakes=args.mistakes,
        teachers=args.teachers,
        batch_delay_s=args.batch_delay_s,
        sync=sync,
        batch=batch,
        same_dataset=same,
    )


def _decision(sample: DecidedSample) -> tuple:
    return sample.id, sample.included, [(r.teacher, r.text, r.accepted, r.scores) for r in sample.rationales]


def print_comparison(result: BatchComparison, console: Console) -> None:
    """The two runs side by side: wall time, USD (total and per teacher), calls, batches."""
    table = Table(
        title=f"teach stage, sync against batch: {result.mistakes} mistakes x {result.teachers} teachers, "
        f"emulated batches finish over {result.batch_delay_s:g} s"
    )
    teachers = list(result.sync.usd_per_teacher)
    for col in ("run", "wall_s", "USD", *(f"USD {t}" for t in teachers), "calls", "batches", "429s", "duplicates"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for label, run in (("all sync", result.sync), (f"batch: {', '.join(result.batch.batch_teachers)}", result.batch)):
        table.add_row(
            label,
            f"{run.wall_s:.1f}",
            fmt_usd(run.usd),
            *(fmt_usd(run.usd_per_teacher[t]) for t in teachers),
            str(run.calls),
            str(run.batches),
            str(run.http_429),
            str(run.duplicates),
        )
    console.print(table)
    console.print(f"same dataset decided: {'yes' if result.same_dataset else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mistakes", type=int, default=300)
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--rpm", type=float, nargs="+", default=[600, 450, 300], help="per teacher, cycled")
    parser.add_argument("--tpm", type=float, nargs="+", default=None, help="per teacher, cycled (default none)")
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--batch", action="store_true", help="compare a run with batch teachers against all sync")
    parser.add_argument(
        "--batch-teachers", type=int, nargs="+", default=[0], help="with --batch: which teachers (by index) batch"
    )
    parser.add_argument(
        "--batch-delay-s", type=float, default=10.0, help="with --batch: the emulator's time to finish a batch"
    )
    args = parser.parse_args(argv)
    if args.batch:
        comparison = anyio.run(compare_batch, args)
        print_comparison(comparison, Console(width=200))
        if args.json:
            args.json.write_bytes(msgspec.json.format(msgspec.json.encode(comparison), indent=2))
        return 0
    result = anyio.run(measure, args)
    table = Table(title=f"teach stage: {result.mistakes} mistakes x {result.teachers} teachers")
    for col in ("calls", "wall_s", "bound_s", "efficiency", "http_429", "duplicates"):
        table.add_column(col, justify="right")
    table.add_row(
        str(result.calls),
        f"{result.wall_s:.1f}",
        f"{result.bound_s:.1f}",
        f"{result.efficiency:.3f}",
        str(result.http_429),
        str(result.duplicates),
    )
    Console().print(table)
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
