"""`--dry-run`: what a run would send, cost and take, from the config and data alone.

Each dataset's work is its mistakes when they are known (imported, or from an
earlier exam of this run), else its training questions with an assumed share of
mistakes (`--mistake-rate`, default 1.0: the upper bound). Output lengths come
from this run's store when it has answers, else per-stage defaults.
"""

from __future__ import annotations

from rich.console import Console

from engine.forecast import Forecast, forecast, print_forecast
from reports.run_report import open_teacher_ledger
from stages.context import RunContext
from stages.sources import exam_mistakes, mistakes_for_teach, train_questions


def dry_run(ctx: RunContext, *, mistake_rate: float = 1.0, console: Console | None = None) -> Forecast:
    """Print (and return) the forecast; sends nothing and writes only forecast.json into an existing run dir."""
    work = {}
    for d in ctx.cfg.datasets:
        if d.mistakes:
            work[d.task] = mistakes_for_teach(d, ctx.out_dir)
        elif (ctx.out_dir / "mistakes.jsonl").exists():
            work[d.task] = exam_mistakes(ctx.out_dir, d.task)
        else:
            work[d.task] = train_questions(d)
    # Read-only: a dry run may look at a run directory another run is using (it takes no lock).
    store = open_teacher_ledger(ctx.out_dir)
    try:
        fc = forecast(ctx.cfg, work, mistake_rate=mistake_rate, store=store)
    finally:
        if store is not None:
            store.close()
    print_forecast(fc, console or Console(), ctx.out_dir)
    return fc
