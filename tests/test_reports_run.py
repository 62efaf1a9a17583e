"""The end-of-run report and plots: on a partial run, on a finished one, and on an empty directory."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from accounting import ledger
from core.config import Config, DatasetSection, RunSection, TeacherSection
from reports.run_report import run_report
from tests.test_ledger import ROWS, T0, _call, _store

pytestmark = pytest.mark.anyio


def _config(out_dir) -> Config:
    teachers = [
        TeacherSection(name=n, provider="openai", model="gpt-3.5-turbo", api_key_env="K", rpm=60.0, tpm=6000.0)
        for n in "ab"
    ]
    return Config(
        run=RunSection(name="demo", out_dir=str(out_dir)),
        datasets=[DatasetSection(task="svamp"), DatasetSection(task="gsm8k")],
        teachers=teachers,
    )


async def test_partial_run_killed_in_teach_still_reports(tmp_path):
    await _store(tmp_path, events=[("stage_start", {"stage": "teach"}, -1)])
    console = Console(record=True, width=200)
    report = run_report(tmp_path, _config(tmp_path), console)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "cost_report.json").is_file()
    data = json.loads((tmp_path / "report.json").read_text())
    svamp, gsm8k = data["datasets"]
    assert svamp["task"] == "svamp" and svamp["mistakes"] == 3 and svamp["mistakes_source"] == "decided samples"
    assert svamp["cost"]["included"] == 2 and gsm8k["cost"]["samples"] == 0  # listed in the config, nothing yet
    (wall,) = data["stage_walls"]
    last = max(r.finished_at for r in ROWS)
    assert wall["stage"] == "teach" and not wall["finished"]
    assert wall["wall_s"] == pytest.approx(last - (T0 - 1))  # killed: counted up to the last record
    assert set(report.plots) == {"calls_per_s", "cumulative_usd"}
    assert (tmp_path / "plots" / "calls_per_s.png").stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "No eval.json" in md and "Plot accuracy skipped" in md and "no (killed?)" in md
    assert "svamp: acceptance per teacher" in console.export_text()


async def test_finished_run_has_accuracy_training_and_rate_limits(tmp_path):
    await _store(
        tmp_path,
        events=[
            ("stage_start", {"stage": "teach"}, -1),
            ("stage_end", {"stage": "teach"}, 20),
            ("budget_reached", {"max_usd": 0.02, "spent_usd": 0.019}, 14),
        ],
    )
    (tmp_path / "exam").mkdir()
    (tmp_path / "exam" / "mistakes_svamp.jsonl").write_text('{"id": "1"}\n{"id": "2"}\n{"id": "3"}\n{"id": "4"}\n')
    evals = [
        dict(task="svamp", model="m", checkpoint="base", n=100, correct=40, accuracy=0.40, ci_low=0.31, ci_high=0.50),
        dict(task="svamp", model="m", checkpoint="final", n=100, correct=55, accuracy=0.55, ci_low=0.45, ci_high=0.64),
    ]
    (tmp_path / "eval.json").write_text(json.dumps({"evals": evals}))
    log = [
        dict(
            step=s,
            epoch=s / 4,
            loss=2.0 / s,
            loss_feedback=2.1 / s,
            loss_rationale=1.9 / s,
            lr=1e-5,
            grad_norm=1.0,
            tokens_per_s=100.0,
        )
        for s in range(1, 5)
    ]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log) + '{"step": 5, "lo')
    report = run_report(tmp_path, _config(tmp_path))
    assert set(report.plots) == {"calls_per_s", "cumulative_usd", "train_loss", "accuracy"}
    svamp = report.datasets[0]
    assert svamp.mistakes == 4 and svamp.mistakes_source == "exam"
    assert svamp.before.accuracy == 0.40 and svamp.after.checkpoint == "final"
    assert report.train.steps == 4 and report.train.last_loss == pytest.approx(0.5)
    (wall,) = report.stage_walls
    assert wall.finished and wall.wall_s == pytest.approx(21.0)
    assert report.budget is not None and report.budget.event is not None and report.budget.event.max_usd == 0.02
    md = (tmp_path / "report.md").read_text()
    assert "40.0% -> 55.0% (+15.0 points)" in md and "spending cap stopped new calls" in md
    # b sent 8 requests (one call took 3 attempts) over its busy span; rate is against 60 rpm
    rates = {t.teacher: t for t in report.teachers}
    b_rows = [r for r in ROWS if r.teacher == "b" and r.status in ("completed", "failed")]
    span = max(r.finished_at for r in b_rows) - min(r.finished_at - r.latency_s for r in b_rows)
    assert rates["b"].requests == sum(max(r.attempts, 1) for r in b_rows)
    assert rates["b"].requests_per_min == pytest.approx(60 * rates["b"].requests / span)
    assert rates["b"].rpm_used == pytest.approx(rates["b"].requests_per_min / 60.0)


def test_empty_run_directory_reports_what_is_missing(tmp_path):
    report = run_report(tmp_path, _config(tmp_path))
    assert report.plots == {} and [d.task for d in report.datasets] == ["svamp", "gsm8k"]
    assert any("No run store" in n for n in report.notes)
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "cost_report.json").exists()


async def test_idle_gaps_do_not_count_as_busy_time(tmp_path):
    rows = [_call("a", "rationale", str(i), at=i) for i in range(3)]
    rows += [_call("a", "rationale", str(10 + i), at=3600 + i) for i in range(3)]  # resumed an hour later
    conn = await _store(tmp_path, rows=rows, samples=[])
    usage = ledger.teacher_usage(conn)["a"]
    assert usage.busy_s == pytest.approx(2 * (2 + 0.5))
