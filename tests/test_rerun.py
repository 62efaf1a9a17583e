"""Rerunning a finished run with other `[review]` settings decides every sample again, buying only what is new.

The demo questions (tasks/demo_data) go to three scripted teachers on the emulator.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.config import load_config
from emulator import EmulatorSpec
from emulator.fair_script import FairScript
from engine.review import accepted as paper_rule
from stages.context import RunContext
from stages.job import run_job
from tasks import load_split
from tests.conftest import authors_file, read_samples, write_config

pytestmark = pytest.mark.anyio


def _ctx(tmp_path: Path, emu, mistakes: Path, **review) -> RunContext:
    cfg_path = write_config(tmp_path, emu, {"svamp": mistakes}, **review)
    return RunContext(cfg_path, load_config(cfg_path), progress=False)


def _call_rows(ctx: RunContext) -> int:
    conn = sqlite3.connect(ctx.store_path)
    try:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def _reviews(samples) -> set[tuple[str, str, str | None]]:
    """The distinct review requests the samples' scores came from: (reviewer, question, rationale)."""
    return {(rev, s.question, r.text) for s in samples for r in s.rationales for rev in r.scores}


async def test_lowering_the_threshold_as_advised_trains_without_buying_anything(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train", limit=20)
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    # A script that knows no gold answer: every rationale is wrong and scored 1..3.
    emu = await emulator(EmulatorSpec(), FairScript(()))
    ctx = _ctx(tmp_path, emu, mistakes, threshold=4.0)
    await run_job(ctx, "teach")
    assert [p.kind for p in (await run_job(ctx, "train")).problems] == ["nothing_to_train"]
    bought, rows = emu.stats().total.completed, _call_rows(ctx)

    ctx = _ctx(tmp_path, emu, mistakes, threshold=2.0)
    result = await run_job(ctx, "teach")
    stats = emu.stats().total

    assert result.problems == []
    assert (stats.completed, stats.duplicates) == (bought, 0)
    # Every answer came from the store, and a reuse in its own slot adds no row.
    assert _call_rows(ctx) == rows
    samples = read_samples(ctx.out_dir)
    assert len(samples) == 20
    for s in samples:
        assert s.decided_with is not None and s.decided_with.threshold == 2.0
        for r in s.rationales:
            assert r.accepted == paper_rule(r.scores.values(), 2.0)
    included = sum(s.included for s in samples)
    assert included > 0
    assert len((ctx.out_dir / "train.jsonl").read_bytes().splitlines()) == included


async def test_skip_options_turned_off_buy_exactly_the_reviews_they_skipped(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    ctx = _ctx(tmp_path, emu, mistakes, skip_decided=True)
    await run_job(ctx, "teach")
    first = read_samples(ctx.out_dir)
    bought = emu.stats().total.completed
    assert sum(len(r.skipped) for s in first for r in s.rationales) > 0

    ctx = _ctx(tmp_path, emu, mistakes)
    await run_job(ctx, "teach")
    full = read_samples(ctx.out_dir)
    after_full = emu.stats().total

    ctx = _ctx(tmp_path, emu, mistakes, threshold=3.0)
    await run_job(ctx, "teach")
    rethresholded = read_samples(ctx.out_dir)
    stats = emu.stats().total

    new_reviews = _reviews(full) - _reviews(first)
    assert new_reviews and after_full.completed - bought == len(new_reviews)
    assert after_full.duplicates == 0
    assert all(not r.skipped and len(r.scores) == 2 for s in full for r in s.rationales)
    # Another threshold: every sample decided again, nothing bought.
    assert stats.completed == after_full.completed and stats.duplicates == 0
    assert [s.id for s in rethresholded] == [s.id for s in full]
    for before, after in zip(full, rethresholded, strict=True):
        assert after.decided_with is not None and after.decided_with.threshold == 3.0
        assert [r.scores for r in after.rationales] == [r.scores for r in before.rationales]
        assert [r.accepted for r in after.rationales] == [paper_rule(r.scores.values(), 3.0) for r in before.rationales]
    assert sum(s.included for s in rethresholded) > sum(s.included for s in full)
