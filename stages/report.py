"""The report stage: cost report and run report rebuilt from the run directory alone."""

from __future__ import annotations

from rich.console import Console

from reports.hub import share
from reports.run_report import run_report
from reports.teach_log import log_teach_metrics
from stages.context import RunContext


def write_reports(ctx: RunContext, *, quiet: bool = False) -> None:
    """Write cost_report.{json,md}, report.{md,json} and plots/ (and print them unless `quiet`).

    Model cards are written for the trained models each time; unless quiet, the teach
    figures also go to `[run] log_to`, and `[hub]`'s export and pushes run.
    """
    ctx.prepare()
    report = run_report(ctx.out_dir, ctx.cfg, None if quiet else Console())
    # Quiet reports follow exam, train and eval, which leave the teach figures and the data as they were.
    if not quiet:
        log_teach_metrics(ctx.cfg, report)
    share(ctx.cfg, report, export=not quiet)
