"""The teach stage's figures in `[run] log_to` (TensorBoard, W&B), read from the run report and the store."""

from __future__ import annotations

from accounting.ledger import Series, call_rate
from core.config import Config
from reports.cost import STORE_FILE, ledger_connection
from reports.run_report import RunReport
from trainer.experiment_log import ExperimentLog


def log_teach_metrics(cfg: Config, report: RunReport) -> None:
    """Write the teach stage's figures to `[run] log_to`, from the report and the store (nothing when unset).

    Per teacher: calls/s over the run with its RPM limit as a second line (both per
    second, so they share an axis), requests/min and the share of its limit used,
    HTTP 429s, USD; per dataset and teacher: acceptance rate; per dataset: USD,
    included samples, USD per included sample.
    """
    if not cfg.run.log_to:
        return
    db = cfg.out_dir / STORE_FILE
    rates: dict[str, Series] = {}
    if db.is_file():
        conn = ledger_connection(db)
        try:
            rates = call_rate(conn)
        finally:
            conn.close()
    limits = {t.name: t.rpm for t in cfg.teachers}
    with ExperimentLog.open(cfg, "teach") as xlog:
        for teacher, series in rates.items():
            xlog.series(f"teach/{teacher}/calls_per_s", series)
            if rpm := limits.get(teacher):
                limit = Series(start=series.start, t_s=series.t_s, values=[rpm / 60.0] * len(series.t_s))
                xlog.series(f"teach/{teacher}/rpm_limit_per_s", limit)
        for rate in report.teachers:
            usage = {"requests_per_min": rate.requests_per_min, "rpm_used": rate.rpm_used,
                     "tokens_per_min": rate.tokens_per_min, "tpm_used": rate.tpm_used}  # fmt: skip
            xlog.scalars(f"teach/{rate.teacher}", usage, 0)
        for section in report.datasets:
            cost = section.cost
            if cost is None:
                continue
            for teacher in sorted({r.teacher for r in cost.rows}):
                rows = [r for r in cost.rows if r.teacher == teacher]
                usd = sum(r.usd for r in rows if r.usd is not None) if any(r.usd is not None for r in rows) else None
                xlog.scalars(f"teach/{section.task}/{teacher}", {
                    "http_429": sum(r.http_429 for r in rows), "usd": usd, "calls": sum(r.calls for r in rows),
                    "acceptance": cost.acceptance[teacher].rate if teacher in cost.acceptance else None,
                }, 0)  # fmt: skip
            xlog.scalars(f"teach/{section.task}", {"usd": cost.total.usd, "included": cost.included,
                                                   "usd_per_included": cost.usd_per_included}, 0)  # fmt: skip
