"""How close the `--dry-run` forecast comes to what a run pays, with and without a pilot.

    python -m bench.forecast_accuracy [--pilot 20] [--long 3] [--short 3]

The 40 demo SVAMP questions, imported as mistakes, are taught by three scripted
teachers on the emulator: one writes answers `--long` times the forecast's
default lengths, one `--short` times shorter, one the defaults. For each it
prints the run's real USD beside the forecast from the defaults, from a pilot of
`--pilot` mistakes, and from `--calibrate-from` the finished run's store.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio
from rich.console import Console

from core.records import Question
from emulator import EmulatorSpec, run_emulator
from emulator.fair_script import FairScript
from stages.context import RunContext, load_run_config
from stages.forecast import dry_run, pilot_dry_run
from stages.job import run_job
from tasks import load_split

TEACHERS = [
    ("gpt", "openai", "model-gpt"),
    ("gemini", "gemini", "model-gemini"),
    ("claude", "anthropic", "model-claude"),
]


def _config(tmp: Path, emu, mistakes: Path) -> RunContext:
    lines = [
        '[run]\nname = "forecast"\nout_dir = "run"\nseed = 731\n',
        f'[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes}"\n',
    ]
    for name, provider, model in TEACHERS:
        lines.append(
            f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\n'
            f'base_url = "{emu.base_url(provider)}"\napi_key_env = "COMMITTEE_BENCH_KEY"\nrpm = 60000\n'
            "max_tokens = 1024\nprice_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n"
        )
    path = tmp / "run.toml"
    path.write_text("\n".join(lines))
    return RunContext(path, load_run_config(path), progress=False)


def write_demo_mistakes(path: Path, questions: Sequence[Question]) -> Path:
    """`questions` as imported mistakes (the FAIR authors' format), each answered "3"; returns `path`."""
    path.write_text(
        json.dumps(
            [
                {
                    "id": int(q.id),
                    "question": q.question,
                    "gold_answer": q.gold,
                    "student_wrong_pred": "I am not sure. The answer is 3.",
                    "student_wrong_final_answer": "3",
                }
                for q in questions
            ]
        )
    )
    return path


def _paid(out_dir: Path) -> float:
    conn = sqlite3.connect(out_dir / "store.sqlite")
    try:
        return conn.execute("SELECT sum(usd) FROM calls WHERE status = 'completed'").fetchone()[0] or 0.0
    finally:
        conn.close()


async def measure(pilot: int, long: float, short: float) -> dict[str, float | None]:
    """USD the run paid, and each forecast's USD (`pilot_low`/`pilot_high`: the pilot's 90% interval)."""
    os.environ.setdefault("COMMITTEE_BENCH_KEY", "bench")
    questions = load_split("svamp", "demo", "train")
    script = FairScript(questions, scale={"model-gpt": long, "model-claude": 1 / short})
    quiet = Console(file=io.StringIO())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mistakes = write_demo_mistakes(tmp / "svamp.json", questions)
        async with run_emulator(EmulatorSpec(), script) as emu:
            ctx = _config(tmp, emu, mistakes)
            defaults = dry_run(ctx, console=quiet)
            fc = await pilot_dry_run(ctx, pilot, console=quiet)
            await run_job(ctx, "teach")
            (tmp / "other").mkdir()
            learned = dry_run(_config(tmp / "other", emu, mistakes), calibrate_from=ctx.out_dir, console=quiet)
        paid = _paid(ctx.out_dir)
    return {
        "paid": paid,
        "defaults": defaults.usd,
        "pilot": fc.usd,
        "pilot_low": fc.usd_low,
        "pilot_high": fc.usd_high,
        "pilot_spent": fc.pilot_usd,
        "calibrated": learned.usd,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot", type=int, default=20)
    parser.add_argument("--long", type=float, default=3.0, help="one teacher's answers x this (default 3)")
    parser.add_argument("--short", type=float, default=3.0, help="another's answers / this (default 3)")
    args = parser.parse_args()
    r: dict[str, float] = {k: v or 0.0 for k, v in anyio.run(measure, args.pilot, args.long, args.short).items()}
    paid = r["paid"]
    print(f"run paid ${paid:.4f}")
    print(f"defaults         ${r['defaults']:.4f}  {r['defaults'] / paid:.3f}x")
    print(
        f"pilot of {args.pilot:<7} ${r['pilot']:.4f}  {r['pilot'] / paid:.3f}x  90% ${r['pilot_low']:.4f}"
        f"-${r['pilot_high']:.4f}  (the pilot itself paid ${r['pilot_spent']:.4f})"
    )
    print(f"calibrate-from   ${r['calibrated']:.4f}  {r['calibrated'] / paid:.3f}x")


if __name__ == "__main__":
    main()
