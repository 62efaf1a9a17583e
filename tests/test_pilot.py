"""`--dry-run --pilot N` against the emulator, with teachers whose answers are nothing like the defaults.

The 40 demo SVAMP questions (shipped in tasks/demo_data) are imported as mistakes;
one scripted teacher writes 3x longer answers than the forecast's defaults, one
3x shorter. A pilot of 20 mistakes must forecast the run's USD within 15% where
the defaults miss, and the real run after it must buy none of the pilot's calls.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from core.config import load_config
from core.errors import ConfigError
from emulator import EmulatorSpec
from emulator.fair_script import FairScript
from stages.context import RunContext
from stages.forecast import dry_run, pilot_dry_run
from stages.job import run_job
from stages.sources import exam_mistakes
from tasks import load_split
from tests.conftest import authors_file, write_config

pytestmark = pytest.mark.anyio

SCALE = {"model-gpt": 3.0, "model-claude": 1 / 3}
LONG_ANSWERS = "max_tokens = 1024\n"


def demo_questions(limit: int | None = None):
    return load_split("svamp", "demo", "train", limit=limit)


def paid_usd(out_dir: Path) -> float:
    conn = sqlite3.connect(out_dir / "store.sqlite")
    try:
        return conn.execute("SELECT sum(usd) FROM calls WHERE status = 'completed'").fetchone()[0] or 0.0
    finally:
        conn.close()


def context(tmp: Path, emu, questions, **review) -> RunContext:
    tmp.mkdir(parents=True, exist_ok=True)
    files = {"svamp": authors_file(tmp / "svamp.json", "svamp", questions)}
    cfg_path = write_config(tmp, emu, files, teacher_extra=LONG_ANSWERS, **review)
    return RunContext(cfg_path, load_config(cfg_path), progress=False)


async def test_a_pilot_of_20_forecasts_the_run_and_is_never_bought_again(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = demo_questions()
    assert len(questions) == 40
    console = Console(record=True, width=220)
    emu = await emulator(EmulatorSpec(), FairScript(questions, scale=SCALE))
    ctx = context(tmp_path, emu, questions)
    defaults = dry_run(ctx, console=Console(file=io.StringIO()))
    assert not ctx.store_path.exists()  # no pilot: nothing sent
    fc = await pilot_dry_run(ctx, 20, console=console)
    pilot_calls = emu.stats().total.completed
    pilot_paid = paid_usd(ctx.out_dir)
    await run_job(ctx, "teach")
    stats = emu.stats()

    actual = paid_usd(ctx.out_dir)
    assert 0 < pilot_calls < stats.total.completed
    assert stats.total.duplicates == 0  # the real run bought none of the pilot's calls again
    assert fc.pilot_usd == pytest.approx(pilot_paid)
    assert abs(fc.usd - actual) <= 0.15 * actual, (fc.usd, actual)
    assert abs(defaults.usd - actual) > 0.15 * actual, (defaults.usd, actual)  # the defaults are off
    assert fc.usd_low <= actual <= fc.usd_high
    assert {r.source for r in fc.datasets[0].rows} == {"pilot (20 of 40)"}
    assert {r.source for r in defaults.datasets[0].rows} == {"defaults"}

    text = console.export_text()
    assert text.index("Pilot: sent and paid for") < text.index("the full run's calls")
    assert "by in-flight" in text and "(pilot)" in text  # wall time from the pilot's measured latencies
    saved = json.loads((ctx.out_dir / "forecast.json").read_text())
    assert saved["usd"] == pytest.approx(fc.usd) and saved["pilot_usd"] == pytest.approx(pilot_paid)
    report = json.loads((ctx.out_dir / "report.json").read_text())
    check = {(r["teacher"], r["stage"]): r for r in report["forecast"]}
    assert len(check) == 9 and sum(r["actual_usd"] for r in check.values()) == pytest.approx(actual)
    assert "Forecast (forecast.json) against actual" in (ctx.out_dir / "report.md").read_text()

    # Another run directory learns from this one's store without a pilot.
    emu = await emulator(EmulatorSpec(), FairScript(questions, scale=SCALE))
    other = context(tmp_path / "other", emu, questions)
    learned = dry_run(other, calibrate_from=ctx.out_dir, console=Console(file=io.StringIO()))
    assert {r.source for r in learned.datasets[0].rows} == {f"store of {ctx.out_dir}"}
    assert abs(learned.usd - actual) <= 0.15 * actual, (learned.usd, actual)


async def test_a_pilot_larger_than_the_mistakes_uses_them_all(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = demo_questions(6)
    console = Console(record=True, width=220)
    emu = await emulator(EmulatorSpec(), FairScript(questions, scale=SCALE))
    ctx = context(tmp_path, emu, questions)
    fc = await pilot_dry_run(ctx, 10, console=console)
    assert "--pilot 10: svamp has only 6 mistakes; the pilot uses all of them" in console.export_text()
    # Every mistake measured: the forecast is what was paid, with nothing left to guess.
    assert fc.usd == pytest.approx(paid_usd(ctx.out_dir)) == pytest.approx(fc.pilot_usd)
    assert fc.usd_low == pytest.approx(fc.usd) == pytest.approx(fc.usd_high)


async def test_a_pilot_the_cap_cannot_pay_for_sends_nothing(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = demo_questions(20)
    emu = await emulator(EmulatorSpec(), FairScript(questions))
    ctx = context(tmp_path, emu, questions, max_usd=0.01)
    with pytest.raises(ConfigError) as err:
        await pilot_dry_run(ctx, 20, console=Console(file=io.StringIO()))
    assert emu.stats().total.received == 0
    message = str(err.value)
    assert "\n" not in message and "--pilot 20" in message and "review.max_usd" in message


def test_calibrate_from_a_directory_that_is_not_a_run(tmp_path, capsys):
    import run

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[run]\nname = "t"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\nsource = "demo"\n'
        '[[teachers]]\nname = "a"\nprovider = "openai"\nmodel = "gpt-4o-mini"\napi_key_env = "K"\n'
        '[[teachers]]\nname = "b"\nprovider = "openai"\nmodel = "gpt-4o"\napi_key_env = "K"\n'
    )
    (tmp_path / "empty").mkdir()
    code = run.main(["--config", str(cfg), "--dry-run", "--calibrate-from", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert f"--calibrate-from {tmp_path / 'empty'}: not a run directory" in err


async def test_a_pilot_before_any_exam_examines_until_it_has_its_mistakes(
    tmp_path, emulator, monkeypatch, tiny_model_dir
):
    from transformers import AutoTokenizer

    import stages.exam
    from tests.test_exam import StubBackend

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = demo_questions()
    gold = {q.question: q.gold for q in questions}

    def half_wrong(prompt: str) -> str:
        text, answer = next((t, g) for t, g in gold.items() if t in prompt)
        wrong = len(text.split()) % 2  # a fixed half of the questions, whatever order they come in
        return f"Adding up.\nThe answer is {float(answer) + wrong:g}."

    student = StubBackend(AutoTokenizer.from_pretrained(tiny_model_dir), half_wrong)
    monkeypatch.setattr(stages.exam, "load_student", lambda ctx, model_path=None: student)
    console = Console(record=True, width=220)
    emu = await emulator(EmulatorSpec(), FairScript(questions, scale=SCALE))
    cfg_path = write_config(tmp_path, emu, {}, teacher_extra=LONG_ANSWERS)
    cfg_path.write_text(cfg_path.read_text() + '\n[[datasets]]\ntask = "svamp"\nsource = "demo"\n')
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    fc = await pilot_dry_run(ctx, 5, console=console)
    examined = student.generated
    await run_job(ctx, "exam")
    await run_job(ctx, "teach")
    stats = emu.stats()

    wrong = sum(len(q.question.split()) % 2 for q in questions)
    (ds,) = fc.datasets
    assert 5 <= examined < 40 and ds.assumed and ds.pilot_samples == 5
    # 40 questions x the share the pilot's exam got wrong; that share's uncertainty widens the interval
    assert len(exam_mistakes(ctx.out_dir, "svamp")) == wrong and 5 <= ds.mistakes <= 40
    actual = paid_usd(ctx.out_dir)
    assert ds.usd_low <= actual <= ds.usd_high, (ds.usd_low, actual, ds.usd_high)
    assert (ds.usd_high - ds.usd_low) / ds.usd > 0.2  # wider than the cost per mistake's spread alone
    assert student.generated == 40  # the real exam reused every answer the pilot's exam stored
    assert stats.total.duplicates == 0


async def test_a_larger_pilot_buys_only_the_difference(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = demo_questions(12)
    quiet = Console(file=io.StringIO())
    emu = await emulator(EmulatorSpec(), FairScript(questions))
    ctx = context(tmp_path, emu, questions)
    small = await pilot_dry_run(ctx, 3, console=quiet)
    first = emu.stats().total.completed
    again = await pilot_dry_run(ctx, 3, console=quiet)
    assert emu.stats().total.completed == first and again.usd == pytest.approx(small.usd)
    await pilot_dry_run(ctx, 6, console=quiet)
    stats = emu.stats()
    conn = sqlite3.connect(ctx.out_dir / "store.sqlite")
    decided = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    conn.close()
    assert decided == 6  # the pilot of 6 contains the pilot of 3
    assert first < stats.total.completed and stats.total.duplicates == 0
