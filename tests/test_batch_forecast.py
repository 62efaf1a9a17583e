"""The dry run in sync and batch mode side by side: USD at batch prices, wall time in waves of batch_expected_hours."""

from __future__ import annotations

import pytest
from rich.console import Console

from accounting.batch_forecast import batch_waves
from accounting.forecast import forecast, print_forecast
from core.config import Config, DatasetSection, ReviewSection, RunSection
from tests.test_forecast import MISTAKES, _teacher


def _config(modes: dict[str, str], **review) -> Config:
    teachers = [
        _teacher(name, model="gpt-4o-mini", mode=mode, batch_expected_hours=2.0 if mode == "batch" else 1.0)
        for name, mode in modes.items()
    ]
    return Config(
        run=RunSection(name="t", out_dir="/nonexistent"),
        datasets=[DatasetSection(task="svamp")],
        teachers=teachers,
        review=ReviewSection(**review),
    )


def test_batch_waves_follow_the_fair_graph():
    three_sync = _config({"a": "sync", "b": "sync", "c": "sync"})
    assert batch_waves(three_sync, set()) == 0
    # A lone batch teacher: its reviews of sync rationales go out beside its first wave; sync reviews take seconds.
    assert batch_waves(three_sync, {"a"}) == 1
    # Batch rationales and feedback, then their batch reviews.
    assert batch_waves(three_sync, {"a", "b"}) == 2
    assert batch_waves(three_sync, {"a", "b", "c"}) == 2
    # skip_decided: a rationale's reviews go one reviewer after another.
    skip = _config({"a": "sync", "b": "sync", "c": "sync"}, skip_decided=True)
    assert batch_waves(skip, {"a"}) == 1
    assert batch_waves(skip, {"a", "b"}) == 2  # c's rationale reviewed by a, then by b
    assert batch_waves(skip, {"a", "b", "c"}) == 3  # a's rationale, then b's review, then c's
    assert batch_waves(_config({"a": "sync", "b": "sync"}, peer_review=False), {"a"}) == 1


def test_dry_run_shows_both_modes_per_dataset_and_teacher():
    cfg = _config({"a": "batch", "b": "sync", "c": "sync"})
    fc = forecast(cfg, {"svamp": MISTAKES}, latency_s=1.0)
    rows = {r.teacher: r for r in fc.modes.rows}
    assert [(r.dataset, r.teacher, r.mode) for r in fc.modes.rows] == [
        ("svamp", "a", "batch"),
        ("svamp", "b", "sync"),
        ("svamp", "c", "sync"),
    ]
    n = len(MISTAKES)
    for r in rows.values():
        assert r.calls == n * 2 + n * 2
        # gpt-4o-mini's table batch rates are half its sync rates.
        assert r.usd_batch == pytest.approx(r.usd_sync / 2)
        assert r.batch_prices == "table:gpt-4o-mini, batch rates"
    # a alone in batch takes one wave of its 2 h; b or c in batch beside a would make it two waves of their 1 h.
    assert (rows["a"].waves, rows["a"].wall_batch_s) == (1, pytest.approx(2 * 3600))
    assert (rows["b"].waves, rows["b"].wall_batch_s) == (2, pytest.approx(2 * 3600))
    # The forecast's own rows bill the batch teacher at batch prices, the others at sync prices.
    usd = {t: sum(r.usd for r in fc.datasets[0].rows if r.teacher == t) for t in "abc"}
    assert usd["a"] == pytest.approx(rows["a"].usd_batch) and usd["b"] == pytest.approx(rows["b"].usd_sync)
    assert fc.usd == pytest.approx(fc.modes.usd) == pytest.approx(usd["a"] + usd["b"] + usd["c"])
    # 20 calls at 60 rpm: 20 s per sync teacher; the batch teacher's wave of 2 h sets the run's wall.
    assert rows["b"].wall_sync_s == pytest.approx(20.0)
    assert fc.wall_s == fc.modes.wall_s == pytest.approx(2 * 3600)
    assert fc.modes.wall_sync_s == pytest.approx(20.0) and fc.modes.wall_batch_s == pytest.approx(4 * 3600)
    assert fc.modes.usd_batch == pytest.approx(fc.modes.usd_sync / 2)
    console = Console(record=True, width=200)
    print_forecast(fc, console)
    text = console.export_text()
    assert "sync or batch, per dataset and teacher" in text and "2h00m (1 x 2h)" in text


def test_a_sync_run_keeps_its_wall_time_and_prices():
    cfg = _config({"a": "sync", "b": "sync"})
    fc = forecast(cfg, {"svamp": MISTAKES}, latency_s=1.0)
    assert fc.wall_s == max(w.wall_s for w in fc.teachers) == pytest.approx(fc.modes.wall_s)
    assert fc.usd == pytest.approx(fc.modes.usd_sync) and fc.modes.usd == pytest.approx(fc.modes.usd_sync)
