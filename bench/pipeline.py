"""How close the teach stage runs to the bound its teachers' rate limits allow.

    python -m bench.pipeline --mistakes 300 --rpm 600 450 300 --latency-ms 300 --json out.json

Three (or `--teachers`) emulated teachers, each with its own RPM/TPM, run the
whole FAIR graph (rationale, feedback, cross-review) over real SVAMP questions
(../shared/data when present, else the demo questions, varied to stay distinct).
The bound is the busiest teacher's time at its limits plus the critical path of
the last sample (a rationale, then its review); efficiency = bound / wall.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import anyio
import msgspec
from rich.console import Console
from rich.table import Table

from bench.throughput import rate_bound_s
from core.config import load_config
from core.records import Mistake, Question, mistake_from
from emulator import EmulatorSpec, Latency, ModelLimits, run_emulator
from emulator.fair_script import FairScript
from stages.context import RunContext
from stages.teach import list_producer, run_teach
from store.calls import Store
from tasks import load_split

_PROVIDERS = ("openai", "gemini", "anthropic")
_SHARED_SVAMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "svamp"


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
    tmp: Path, n_teachers: int, rpm: list[float], tpm: list[float | None], in_flight: int, emu, mistakes_file: Path
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


async def measure(args: argparse.Namespace) -> PipelineRun:
    import os

    os.environ.setdefault("BENCH_KEY", "bench")
    n_t = args.teachers
    rpm = (args.rpm * n_t)[:n_t]
    tpm = ((args.tpm or [None]) * n_t)[:n_t]
    qs = questions(args.mistakes)
    mistakes = mistakes_of(qs)
    spec = EmulatorSpec(
        models={f"model-{i}": ModelLimits(rpm=rpm[i], tpm=tpm[i]) for i in range(n_t)},
        latency=Latency(median_ms=args.latency_ms, sigma=args.latency_sigma),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        async with run_emulator(spec, FairScript(qs)) as emu:
            cfg_path = write_config(
                tmp_path, n_t, rpm, tpm, args.max_in_flight, emu, authors_json(mistakes, tmp_path / "m.json")
            )
            ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
            ctx.prepare()
            async with Store.open(ctx.store_path) as store:
                start = time.perf_counter()
                await run_teach(ctx, {"svamp": list_producer(mistakes)}, questions=qs, store=store)
                wall = time.perf_counter() - start
            stats = emu.stats()
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
    args = parser.parse_args(argv)
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
