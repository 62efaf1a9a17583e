"""The paper's baselines as config switches, and variants decided from one run's samples without new calls."""

from __future__ import annotations

import sqlite3

import pytest

from core.config import load_config
from core.errors import ConfigError
from dataset.ablation import Variant, paper_variants, restrict, variant_usd
from emulator import EmulatorSpec
from emulator.fair_script import FairScript
from stages.context import RunContext
from stages.job import run_job
from tasks import load_split
from tests.conftest import authors_file, read_samples, write_config

pytestmark = pytest.mark.anyio


async def _teach(emulator, tmp_path, monkeypatch, **review):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    tmp_path.mkdir(parents=True, exist_ok=True)
    qs = load_split("svamp", "demo", "train")[:30]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    cfg_path = write_config(tmp_path, emu, files, **review)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    await run_job(ctx, "teach")
    sent = emu.stats().total.completed
    return ctx, read_samples(ctx.out_dir), sent


async def test_committee_without_review_buys_no_review_and_accepts_every_rationale(tmp_path, monkeypatch, emulator):
    _, samples, sent = await _teach(emulator, tmp_path, monkeypatch, peer_review=False)
    assert sent == 30 * 6
    assert all(r.accepted and not r.scores for s in samples for r in s.rationales)
    assert all(s.included for s in samples)


async def test_single_teacher_asks_that_teacher_alone(tmp_path, monkeypatch, emulator):
    _, samples, sent = await _teach(emulator, tmp_path, monkeypatch, single_teacher="gemini")
    assert sent == 30 * 2
    assert all([r.teacher for r in s.rationales] == ["gemini"] == [f.teacher for f in s.feedback] for s in samples)
    assert all(s.included for s in samples)


async def test_variants_decided_from_the_full_run_match_their_own_runs(tmp_path, monkeypatch, emulator):
    full_ctx, full, _ = await _teach(emulator, tmp_path / "full", monkeypatch)
    alone_ctx, alone, _ = await _teach(emulator, tmp_path / "alone", monkeypatch, single_teacher="gemini")
    variants = {v.name: v for v in paper_variants(full_ctx.cfg)}
    assert set(variants) == {"fair", "single_gpt", "single_gemini", "single_claude", "no_review", "alpha_0", "alpha_1"}
    derived = [restrict(s, variants["single_gemini"]) for s in full]
    strip = [
        (
            s.id,
            s.included,
            [(r.teacher, r.text, r.accepted) for r in s.rationales],
            [(f.teacher, f.text) for f in s.feedback],
        )
        for s in derived
    ]
    assert strip == [
        (
            s.id,
            s.included,
            [(r.teacher, r.text, r.accepted) for r in s.rationales],
            [(f.teacher, f.text) for f in s.feedback],
        )
        for s in alone
    ]
    assert restrict(full[0], variants["alpha_0"]) is full[0]
    conn = sqlite3.connect(full_ctx.store_path)
    try:
        every = variant_usd(conn, "svamp", variants["fair"])
        no_review = variant_usd(conn, "svamp", variants["no_review"])
        single = variant_usd(conn, "svamp", variants["single_gemini"])
    finally:
        conn.close()
    conn = sqlite3.connect(alone_ctx.store_path)
    try:
        assert single == pytest.approx(variant_usd(conn, "svamp", Variant(name="x")))
    finally:
        conn.close()
    assert every > no_review > single > 0


def test_single_teacher_must_name_a_teacher(tmp_path, monkeypatch):
    class Emu:
        def base_url(self, provider):
            return "http://127.0.0.1:9/v1"

    path = write_config(tmp_path, Emu(), {"svamp": tmp_path / "m.json"}, single_teacher="gtp")
    with pytest.raises(ConfigError, match=r"single_teacher: 'gtp' is not a teacher; use one of gpt, gemini, claude"):
        load_config(path)
