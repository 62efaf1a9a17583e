"""The report stage: cost report and run report rebuilt from the run directory alone."""

from __future__ import annotations

from rich.console import Console

from reports.experiment_log import log_teach_metrics
from reports.run_report import run_report
from stages.context import RunContext


def write_reports(ctx: RunContext, *, quiet: bool = False) -> None:
    """Write cost_report.{json,md}, report.{md,json} and plots/ (and print them unless `quiet`)."""
    ctx.prepare()
    report = run_report(ctx.out_dir, ctx.cfg, None if quiet else Console())
    if not quiet:
        # Quiet reports follow exam, train and eval, which leave the teach figures as they were.
        log_teach_metrics(ctx.cfg, report)
