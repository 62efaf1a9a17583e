"""The teach stage end to end against the emulator with three scripted teachers.

SVAMP questions (the demo's real ones first) and synthetic StrategyQA ones, imported in
the FAIR authors' mistake format; the teachers speak the three wire formats. The decisions in dataset.jsonl must be
exactly what the paper's rule gives for the scores the script hands out.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.abc
import pytest

from core.config import load_config
from core.records import Question
from emulator import EmulatorSpec, Latency
from emulator.fair_script import FairScript
from engine.review import accepted as paper_rule
from stages.context import RunContext
from stages.job import run_job
from tasks import load_split
from tests.conftest import TEACHERS, authors_file, read_samples, write_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def real_questions(bench_data: Path) -> dict[str, list[Question]]:
    # SVAMP's train head is the demo's real questions, then SVAMP-shaped fillers; StrategyQA is synthetic.
    return {
        "svamp": load_split("svamp", str(bench_data / "svamp"), "train", limit=120),
        "strategyqa": load_split("strategyqa", str(bench_data / "strategyqa"), "train", limit=120),
    }


@pytest.mark.parametrize("threshold", [3.5, 4.0])
async def test_decisions_follow_the_paper_rule(tmp_path, monkeypatch, real_questions, emulator, threshold):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    all_questions = [q for qs in real_questions.values() for q in qs]
    script = FairScript(all_questions, seed=3)
    files = {t: authors_file(tmp_path / f"{t}.json", t, qs) for t, qs in real_questions.items()}
    spec = EmulatorSpec(latency=Latency(median_ms=5, sigma=0.5))
    emu = await emulator(spec, script)
    cfg_path = write_config(tmp_path, emu, files, threshold=threshold)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    result = await run_job(ctx, "teach")
    stats = emu.stats()

    assert result.problems == []
    samples = read_samples(ctx.out_dir)
    n = len(all_questions)
    assert len(samples) == n
    model = {name: m for name, _, m in TEACHERS}
    n_accepted = n_included = 0
    for s in samples:
        for r in s.rationales:
            expected = {
                rev: script.review_score(model[rev], s.task, r.text, s.gold) for rev in model if rev != r.teacher
            }
            assert r.scores == expected
            assert r.accepted == paper_rule(expected.values(), threshold)
            n_accepted += r.accepted
        assert all(f.text for f in s.feedback)
        assert s.included == any(r.accepted for r in s.rationales)
        n_included += s.included
    # Neither all nor none: the scripted teachers are of mixed quality.
    assert 0 < n_accepted < 3 * n and 0 < n_included < n
    # 3 rationale + 3 feedback calls per sample, and a review per (reviewer, rationale
    # text): two teachers writing the same rationale share one paid review (content key).
    reviews = {(rev, s.task, s.question, r.text) for s in samples for r in s.rationales for rev in r.scores}
    assert n * 6 < n * 6 + len(reviews) <= n * 12
    assert stats.total.completed == n * 6 + len(reviews)
    assert stats.total.duplicates == 0
    train = (ctx.out_dir / "train.jsonl").read_bytes().splitlines()
    assert len(train) == n_included
    assert {json.loads(t)["id"] for t in train} <= {s.id for s in samples}


async def test_rerun_sends_nothing_and_keys_stay_secret(tmp_path, monkeypatch, real_questions, emulator):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    qs = real_questions["svamp"][:30]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    cfg_path = write_config(tmp_path, emu, files)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    await run_job(ctx, "teach")
    first = emu.stats().total.completed
    before = (ctx.out_dir / "dataset.jsonl").read_bytes()
    await run_job(ctx, "teach")
    assert emu.stats().total.completed == first
    assert (ctx.out_dir / "dataset.jsonl").read_bytes() == before
    for path in ctx.out_dir.rglob("*"):
        if path.is_file():
            assert b"sk-test-secret" not in path.read_bytes(), path


@pytest.mark.parametrize("option", ["skip_decided", "skip_wrong_answer"])
async def test_skip_options_save_reviews(tmp_path, monkeypatch, real_questions, emulator, option):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:60]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    script = FairScript(qs)
    emu = await emulator(EmulatorSpec(), script)
    cfg_path = write_config(tmp_path, emu, files, **{option: True})
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    await run_job(ctx, "teach")
    reviews_sent = emu.stats().total.completed - 60 * 6
    samples = read_samples(ctx.out_dir)
    reasons = {why for s in samples for r in s.rationales for why in r.skipped.values()}
    assert reasons == {"decided" if option == "skip_decided" else "wrong_answer"}
    skipped = sum(len(r.skipped) for s in samples for r in s.rationales)
    scored = sum(len(r.scores) for s in samples for r in s.rationales)
    distinct = {(rev, s.id, r.text) for s in samples for r in s.rationales for rev in r.scores}
    assert skipped > 0 and scored + skipped == 60 * 6 and reviews_sent == len(distinct)
    for s in samples:
        for r in s.rationales:
            # A skipped review never changes a decision: with the scores the skipped
            # reviewers would have given, the paper's rule says the same.
            full = dict(r.scores)
            for rev in r.skipped:
                full[rev] = script.review_score(f"model-{rev}", s.task, r.text, s.gold)
            if option == "skip_decided":
                assert r.accepted == paper_rule(full.values(), 4.0)
            elif r.skipped:
                assert not r.accepted and not r.answer_correct


async def test_cost_report_equals_the_providers_usage(tmp_path, monkeypatch, real_questions, emulator):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["strategyqa"][:40]
    files = {"strategyqa": authors_file(tmp_path / "s.json", "strategyqa", qs)}
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    cfg_path = write_config(tmp_path, emu, files)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    await run_job(ctx, "teach")
    usage = emu.stats().total
    report = json.loads((ctx.out_dir / "cost_report.json").read_text())
    (section,) = report["datasets"]
    rows = section["rows"]
    assert sum(r["input_tokens"] for r in rows) == usage.input_tokens
    assert sum(r["output_tokens"] for r in rows) == usage.output_tokens
    assert sum(r["calls"] for r in rows) == usage.completed
    # Every teacher is priced $1 in, $2 out per million tokens in write_config.
    expected_usd = (usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6
    assert report["total_usd"] == pytest.approx(expected_usd, rel=1e-9)
    assert (ctx.out_dir / "report.md").exists() and (ctx.out_dir / "cost_report.md").exists()


async def _html_provider(stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[int]) -> None:
    """A provider answering every POST with an HTML error page, on 127.0.0.1; reports its port, serves until `stop`."""
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        task_status.started(site._server.sockets[0].getsockname()[1])
        await stop.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


@pytest.mark.parametrize("fault", ["refused", "html"])
async def test_a_broken_teacher_is_named_and_the_others_keep_going(
    tmp_path, monkeypatch, real_questions, emulator, fault
):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:10]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    async with anyio.create_task_group() as tg:
        stop = anyio.Event()
        bad_url = "http://127.0.0.1:9"
        if fault == "html":
            bad_url = f"http://127.0.0.1:{await tg.start(_html_provider, stop)}"
        cfg_path = write_config(tmp_path, emu, files, urls={"claude": bad_url}, teacher_extra="max_attempts = 2\n")
        ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
        result = await run_job(ctx, "teach")
        stats = emu.stats()
        stop.set()
    cause = "connection refused" if fault == "refused" else "HTML instead of JSON"
    failed = [p.message for p in result.problems if p.kind == "call_failed"]
    assert any(line.startswith("svamp: teacher 'claude'") and cause in line for line in failed), result
    # The two working teachers answered everything asked of them: rationale, feedback
    # and the review of each other's rationale.
    assert stats.models["model-gpt"].completed >= 10 * 3 and stats.models["model-gemini"].completed >= 10 * 3
    samples = read_samples(ctx.out_dir)
    assert all(s.missing and all("claude" in m for m in s.missing) for s in samples)


async def test_spending_cap_stops_cleanly_and_says_where(tmp_path, monkeypatch, real_questions, emulator):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:60]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    emu = await emulator(EmulatorSpec(latency=Latency(median_ms=5)), FairScript(qs))
    cfg_path = write_config(tmp_path, emu, files, max_usd=0.02, samples_in_flight=4)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    result = await run_job(ctx, "teach")
    assert result.budget_reached
    assert any(p.kind == "not_started" and "spending cap" in p.message for p in result.problems), result.problems
    report = json.loads((ctx.out_dir / "cost_report.json").read_text())
    # Reservations are worst case (max_tokens), so the cap is never passed.
    assert 0 < report["total_usd"] <= 0.02
    assert report["datasets"][0]["stopped_at_budget"] is True
    assert "spending cap" in (ctx.out_dir / "report.md").read_text()


async def test_dry_run_forecast_is_within_15_percent_of_the_run(tmp_path, monkeypatch, real_questions, emulator):
    from stages.forecast import dry_run

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:50]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    cfg_path = write_config(tmp_path, emu, files)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    forecast = dry_run(ctx)  # before the run: no store, default output lengths
    assert not ctx.store_path.exists()
    await run_job(ctx, "teach")
    report = json.loads((ctx.out_dir / "cost_report.json").read_text())
    measured = {k: sum(r[k] for r in report["datasets"][0]["rows"]) for k in ("calls", "input_tokens", "output_tokens")}
    predicted = {
        "calls": forecast.calls,
        "input_tokens": sum(r.input_tokens for d in forecast.datasets for r in d.rows),
        "output_tokens": sum(r.output_tokens for d in forecast.datasets for r in d.rows),
    }
    for key, value in measured.items():
        assert abs(predicted[key] - value) <= 0.15 * value, (key, predicted[key], value)
