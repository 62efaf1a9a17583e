"""The teach stage end to end against the emulator with three scripted teachers.

Real SVAMP and StrategyQA questions, imported in the FAIR authors' mistake format;
the teachers speak the three wire formats. The decisions in dataset.jsonl must be
exactly what the paper's rule gives for the scores the script hands out.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import msgspec
import pytest

from core.config import load_config
from core.samples import DecidedSample
from emulator import EmulatorSpec, Latency, run_emulator
from emulator.fair_script import FairScript
from engine.review import accepted as paper_rule
from stages.context import RunContext
from stages.job import run_job
from tasks import load_split

pytestmark = pytest.mark.anyio

TEACHERS = [
    ("gpt", "openai", "model-gpt"),
    ("gemini", "gemini", "model-gemini"),
    ("claude", "anthropic", "model-claude"),
]


def authors_file(path: Path, task: str, questions) -> Path:
    """Write `questions` as the FAIR authors' *_false_round0.json (every one a mistake)."""
    rows = []
    for q in questions:
        gold = {"svamp": q.gold, "strategyqa": f"{q.gold}.\tSome facts."}[task]
        rows.append(
            {
                "id": int(q.id),
                "question": q.question,
                "gold_answer": gold,
                "student_wrong_pred": "I am not sure. The answer is 3.",
                "student_wrong_final_answer": "3",
            }
        )
    path.write_text(json.dumps(rows))
    return path


def write_config(
    tmp: Path, emu, files: dict[str, Path], *, urls: dict[str, str] | None = None, teacher_extra: str = "", **review
) -> Path:
    lines = ['[run]\nname = "t"\nout_dir = "run"\nseed = 731\n']
    for task, f in files.items():
        lines.append(f'[[datasets]]\ntask = "{task}"\nmistakes = "{f}"\n')
    for name, provider, model in TEACHERS:
        lines.append(
            f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\n'
            f'base_url = "{(urls or {}).get(name, emu.base_url(provider))}"\napi_key_env = "COMMITTEE_TEST_KEY"\n'
            "rpm = 60000\nprice_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n" + teacher_extra
        )
    lines.append("[review]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in review.items()))
    path = tmp / "run.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def real_questions(shared_data):
    return {
        "svamp": load_split("svamp", str(shared_data / "svamp"), "train", limit=120),
        "strategyqa": load_split("strategyqa", str(shared_data / "strategyqa"), "train", limit=120),
    }


def read_samples(out_dir: Path) -> list[DecidedSample]:
    decoder = msgspec.json.Decoder(DecidedSample)
    return [decoder.decode(line) for line in (out_dir / "dataset.jsonl").read_bytes().splitlines()]


@pytest.mark.parametrize("threshold", [3.5, 4.0])
async def test_decisions_follow_the_paper_rule(tmp_path, monkeypatch, real_questions, threshold):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    all_questions = [q for qs in real_questions.values() for q in qs]
    script = FairScript(all_questions, seed=3)
    files = {t: authors_file(tmp_path / f"{t}.json", t, qs) for t, qs in real_questions.items()}
    spec = EmulatorSpec(latency=Latency(median_ms=5, sigma=0.5))
    async with run_emulator(spec, script) as emu:
        cfg_path = write_config(tmp_path, emu, files, threshold=threshold)
        ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
        result = await run_job(ctx, "teach")
        stats = emu.stats()

    assert result.problems == []
    samples = read_samples(ctx.out_dir)
    assert len(samples) == 240
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
    assert 0 < n_accepted < 3 * 240 and 0 < n_included < 240
    # 3 rationale + 3 feedback calls per sample, and a review per (reviewer, rationale
    # text): two teachers writing the same rationale share one paid review (content key).
    reviews = {(rev, s.task, s.question, r.text) for s in samples for r in s.rationales for rev in r.scores}
    assert 240 * 6 < 240 * 6 + len(reviews) <= 240 * 12
    assert stats.total.completed == 240 * 6 + len(reviews)
    assert stats.total.duplicates == 0
    train = (ctx.out_dir / "train.jsonl").read_bytes().splitlines()
    assert len(train) == n_included
    assert {json.loads(t)["id"] for t in train} <= {s.id for s in samples}


async def test_rerun_sends_nothing_and_keys_stay_secret(tmp_path, monkeypatch, real_questions):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    qs = real_questions["svamp"][:30]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    async with run_emulator(EmulatorSpec(), FairScript(qs)) as emu:
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
async def test_skip_options_save_reviews(tmp_path, monkeypatch, real_questions, option):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:60]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    script = FairScript(qs)
    async with run_emulator(EmulatorSpec(), script) as emu:
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


async def test_cost_report_equals_the_providers_usage(tmp_path, monkeypatch, real_questions):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["strategyqa"][:40]
    files = {"strategyqa": authors_file(tmp_path / "s.json", "strategyqa", qs)}
    async with run_emulator(EmulatorSpec(), FairScript(qs)) as emu:
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


async def _html_provider(port_holder: list[int], stop: anyio.Event) -> None:
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_holder.append(site._server.sockets[0].getsockname()[1])
    await stop.wait()
    await runner.cleanup()


@pytest.mark.parametrize("fault", ["refused", "html"])
async def test_a_broken_teacher_is_named_and_the_others_keep_going(tmp_path, monkeypatch, real_questions, fault):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:10]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    async with run_emulator(EmulatorSpec(), FairScript(qs)) as emu, anyio.create_task_group() as tg:
        port, stop = [], anyio.Event()
        if fault == "html":
            tg.start_soon(_html_provider, port, stop)
            while not port:
                await anyio.sleep(0.01)
        bad_url = f"http://127.0.0.1:{port[0]}" if port else "http://127.0.0.1:9"
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


async def test_spending_cap_stops_cleanly_and_says_where(tmp_path, monkeypatch, real_questions):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:60]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    async with run_emulator(EmulatorSpec(latency=Latency(median_ms=5)), FairScript(qs)) as emu:
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


async def test_dry_run_forecast_is_within_15_percent_of_the_run(tmp_path, monkeypatch, real_questions):
    from stages.forecast import dry_run

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = real_questions["svamp"][:50]
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", qs)}
    async with run_emulator(EmulatorSpec(), FairScript(qs)) as emu:
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
