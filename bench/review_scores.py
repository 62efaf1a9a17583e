"""How many peer reviews yield no valid score, read from brackets and from structured output.

    python -m bench.review_scores [--mistakes 40] [--forget gpt=0.3 gemini=0.1 claude=0]

The demo SVAMP questions, imported as mistakes, are taught by three scripted teachers on
the emulator (one per wire format), twice: with the paper's free-text reviews (scores read
from their brackets) and with `[review] structured = true` (scores read from each
provider's structured output). Each reviewer forgets the brackets in the given share of
its free-text reviews. Prints, per reviewer, the share of reviews without a valid score
as the run's cost report counts it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import anyio

from bench.forecast_accuracy import write_demo_mistakes
from emulator import EmulatorSpec, run_emulator
from emulator.fair_script import FairScript
from emulator.spec import AnswerFn
from reports.cost import ReviewValidity, build_cost_report, ledger_connection
from stages.context import RunContext, load_run_config
from stages.job import run_job
from tasks import load_split

# name, provider, emulated model
TEACHERS = (
    ("gpt", "openai", "model-gpt"),
    ("gemini", "gemini", "model-gemini"),
    ("claude", "anthropic", "model-claude"),
)
DEFAULT_FORGET = {"gpt": 0.3, "gemini": 0.1, "claude": 0.0}


def _context(folder: Path, emu, mistakes: Path, *, structured: bool) -> RunContext:
    lines = [
        f'[run]\nname = "scores"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes}"\n',
        f"[review]\nstructured = {'true' if structured else 'false'}\n",
    ]
    for name, provider, model in TEACHERS:
        lines.append(
            f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\n'
            f'base_url = "{emu.base_url(provider)}"\napi_key_env = "COMMITTEE_BENCH_KEY"\nrpm = 60000\n'
            "price_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n"
        )
    folder.mkdir()
    path = folder / "run.toml"
    path.write_text("\n".join(lines))
    return RunContext(path, load_run_config(path), progress=False)


async def measure(
    mistakes: int, forget: Mapping[str, float], answer_fn: AnswerFn | None = None
) -> dict[bool, list[ReviewValidity]]:
    """Per setting of `structured` (False, True): each reviewer's review validity from the cost report.

    `forget`: teacher name -> share of its free-text reviews without brackets. `answer_fn`
    wraps the scripted teachers (tests use it to see the requests).
    """
    os.environ.setdefault("COMMITTEE_BENCH_KEY", "bench")
    questions = load_split("svamp", "demo", "train")[:mistakes]
    models = {name: model for name, _, model in TEACHERS}
    script = FairScript(questions, forget_brackets={models[name]: share for name, share in forget.items()})
    out: dict[bool, list[ReviewValidity]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = write_demo_mistakes(tmp / "svamp.json", questions)
        async with run_emulator(EmulatorSpec(), answer_fn or script) as emu:
            for structured in (False, True):
                ctx = _context(tmp / f"structured-{structured}", emu, path, structured=structured)
                await run_job(ctx, "teach")
                conn = ledger_connection(ctx.out_dir / "store.sqlite")
                try:
                    out[structured] = build_cost_report(conn, ["svamp"]).datasets[0].review_validity
                finally:
                    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mistakes", type=int, default=40)
    parser.add_argument(
        "--forget", nargs="*", default=[f"{k}={v}" for k, v in DEFAULT_FORGET.items()], help="teacher=share ..."
    )
    args = parser.parse_args()
    forget = {k: float(v) for k, v in (item.split("=", 1) for item in args.forget)}
    result = anyio.run(measure, args.mistakes, forget)
    print(f"{'reviewer':<10} {'forgets':>8} {'brackets: no score':>20} {'structured: no score':>22}")
    for plain, structured in zip(result[False], result[True], strict=True):
        print(
            f"{plain.reviewer:<10} {forget.get(plain.reviewer, 0.0):>8.0%} "
            f"{plain.without_score:>4}/{plain.reviews:<4} {plain.share or 0:>9.1%} "
            f"{structured.without_score:>6}/{structured.reviews:<4} {structured.share or 0:>9.1%}"
        )


if __name__ == "__main__":
    main()
