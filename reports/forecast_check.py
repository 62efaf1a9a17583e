"""Forecast against actual: the `--dry-run` forecast kept in `forecast.json` beside what the run paid, per row."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec

from accounting.forecast import Forecast
from core.tables import Table, fmt_num, fmt_pct, fmt_usd

log = logging.getLogger(__name__)

FORECAST_FILE = "forecast.json"


class ForecastCheckRow(msgspec.Struct, kw_only=True):
    """One dataset x teacher x stage: forecast and paid calls and USD (actual/forecast in `usd_ratio`)."""

    dataset: str
    teacher: str
    stage: str
    source: str
    forecast_calls: int
    actual_calls: int
    forecast_usd: float | None
    usd_low: float | None
    usd_high: float | None
    actual_usd: float | None
    usd_ratio: float | None


def read_forecast(out_dir: Path) -> Forecast | None:
    """The run directory's forecast.json, or None when there is none (or it is unreadable: logged)."""
    path = Path(out_dir) / FORECAST_FILE
    if not path.is_file():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=Forecast)
    except msgspec.DecodeError as exc:
        log.warning("%s: not a readable forecast (%s); forecast vs actual left out of the report", path, exc)
        return None


def check_forecast(fc: Forecast, conn: sqlite3.Connection) -> list[ForecastCheckRow]:
    """Each forecast row beside the completed (paid) calls the store holds for it."""
    actual = {
        (ds, teacher, stage): (calls, usd if priced == calls else None)
        for ds, teacher, stage, calls, usd, priced in conn.execute(
            "SELECT dataset, teacher, stage, COUNT(*), SUM(usd), COUNT(usd) FROM calls WHERE status = 'completed' "
            "GROUP BY dataset, teacher, stage"
        )
    }
    rows = []
    for ds in fc.datasets:
        for r in ds.rows:
            calls, usd = actual.get((r.dataset, r.teacher, r.stage), (0, 0.0))
            rows.append(
                ForecastCheckRow(
                    dataset=r.dataset,
                    teacher=r.teacher,
                    stage=r.stage,
                    source=r.source,
                    forecast_calls=r.calls,
                    actual_calls=calls,
                    forecast_usd=r.usd,
                    usd_low=r.usd_low,
                    usd_high=r.usd_high,
                    actual_usd=usd,
                    usd_ratio=usd / r.usd if usd is not None and r.usd else None,
                )
            )
    return rows


def forecast_check_table(rows: list[ForecastCheckRow]) -> Table:
    """The forecast-vs-actual table of the run report."""

    def interval(r: ForecastCheckRow) -> str:
        return "-" if r.usd_low is None or r.usd_high is None else f"{fmt_usd(r.usd_low)} - {fmt_usd(r.usd_high)}"

    forecast = sum(r.forecast_usd or 0.0 for r in rows)
    paid = sum(r.actual_usd or 0.0 for r in rows)
    return Table(
        title="Forecast (forecast.json) against actual, per dataset x teacher x stage",
        headers=[
            "dataset",
            "teacher",
            "stage",
            "source",
            "calls fc",
            "calls",
            "USD fc",
            "USD fc 90%",
            "USD",
            "USD / fc",
        ],
        text_columns=4,
        rows=[
            [
                r.dataset,
                r.teacher,
                r.stage,
                r.source,
                fmt_num(r.forecast_calls),
                fmt_num(r.actual_calls),
                fmt_usd(r.forecast_usd),
                interval(r),
                fmt_usd(r.actual_usd),
                fmt_pct(r.usd_ratio),
            ]
            for r in rows
        ],
        note=f"Forecast {fmt_usd(forecast)}, paid {fmt_usd(paid)}"
        + (f" ({fmt_pct(paid / forecast)} of the forecast)." if forecast else "."),
    )
