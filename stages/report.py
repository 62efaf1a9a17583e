"""The report stage: cost report and run report rebuilt from the run directory alone."""

from __future__ import annotations

from rich.console import Console

from reports.cost import cost_report
from stages.context import RunContext


def write_reports(ctx: RunContext, *, quiet: bool = False) -> None:
    """Write cost_report.{json,md} (and print it unless `quiet`) when the run has a store."""
    if not ctx.store_path.exists():
        return
    cost_report(ctx.out_dir, [d.task for d in ctx.cfg.datasets], None if quiet else Console())
