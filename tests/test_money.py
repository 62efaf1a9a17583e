"""Money against a realistic provider: every billed token in the ledger, the cap binds on money,
quota and overload handled. The emulator bills what real providers bill (answers without usable
text, requests whose client left) and its `billed_*` stats are the ground truth.

80 real SVAMP questions (the demo's, shipped in the repo) through three scripted teachers
speaking the three wire formats, as in tests/test_pipeline.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from core.config import load_config
from emulator import EmulatorSpec, Latency
from emulator.fair_script import FairScript
from emulator.spec import Billing, Faults, ModelLimits, Overload
from reports.cost import build_cost_report, ledger_connection
from stages.context import RunContext
from stages.job import run_job
from tasks import load_split
from tests.conftest import TEACHERS, authors_file, write_config

pytestmark = pytest.mark.anyio

PRICE_IN, PRICE_OUT = 1.0e-6, 2.0e-6  # write_config's prices per token


@pytest.fixture(scope="module")
def questions():
    train = load_split("svamp", "demo", "train")
    test = load_split("svamp", "demo", "test")
    # The two splits number their questions alike: keep the ids apart.
    return train + [msgspec.structs.replace(q, id=str(1000 + int(q.id))) for q in test]


def billed_usd(stats) -> float:
    return stats.billed_input_tokens * PRICE_IN + stats.billed_output_tokens * PRICE_OUT


async def teach(tmp_path: Path, emu, questions, *, teacher_extra: str = "", **review):
    files = {"svamp": authors_file(tmp_path / "svamp.json", "svamp", questions)}
    cfg_path = write_config(tmp_path, emu, files, teacher_extra=teacher_extra, **review)
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    result = await run_job(ctx, "teach")
    return ctx, result


def cost_report(ctx):
    conn = ledger_connection(ctx.out_dir / "store.sqlite")
    try:
        return build_cost_report(conn)
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")


async def test_the_cost_report_is_what_the_provider_billed_answers_without_text_included(tmp_path, emulator, questions):
    faults = Faults(
        filtered_rate=0.04,
        refusal_rate=0.04,
        truncated_rate=0.03,
        empty_rate=0.03,
        error_rate=0.03,
        error_200_rate=0.03,
        reset_rate=0.02,
    )
    spec = EmulatorSpec(latency=Latency(median_ms=2), faults=faults, billing=Billing(unusable=True), seed=5)
    emu = await emulator(spec, FairScript(questions))
    ctx, _ = await teach(tmp_path, emu, questions)
    stats = emu.stats().total
    report = cost_report(ctx)
    # Billed answers without usable text happened, and were paid for.
    assert stats.billed_requests > stats.completed
    assert report.total_usd == pytest.approx(billed_usd(stats), rel=1e-3)
    tokens = sum(s.total.input_tokens for s in report.datasets), sum(s.total.output_tokens for s in report.datasets)
    assert tokens == (stats.billed_input_tokens, stats.billed_output_tokens)
    assert report.datasets[0].total.unusable > 0
    conn = ledger_connection(ctx.out_dir / "store.sqlite")
    try:
        kinds = {k for (k,) in conn.execute("SELECT unusable FROM calls WHERE unusable IS NOT NULL")}
        statuses = {s for (s,) in conn.execute("SELECT http_status FROM calls WHERE status = 'failed'")}
    finally:
        conn.close()
    assert "truncated" in kinds and kinds <= {"filtered", "refused", "truncated", "empty"}
    assert 200 in statuses  # truncated answers end their call at once, with the raw status


async def test_abandoned_requests_are_covered_by_the_possibly_billed_column(tmp_path, emulator, questions):
    faults = Faults(hang_rate=0.03, hang_s=30.0, malformed_rate=0.03)
    spec = EmulatorSpec(
        latency=Latency(median_ms=2), faults=faults, billing=Billing(abandoned=True, unusable=True), seed=7
    )
    emu = await emulator(spec, FairScript(questions))
    ctx, result = await teach(tmp_path, emu, questions[:40], teacher_extra="timeout_s = 0.5\n")
    stats = emu.stats().total
    assert result.problems == []
    report = cost_report(ctx)
    assert stats.abandoned_billed > 0
    assert report.total_usd is not None and report.possibly_usd > 0
    # What was reported is counted exactly; what was abandoned is covered by its worst case.
    assert report.total_usd < billed_usd(stats) <= report.total_usd + report.possibly_usd


async def test_an_answer_without_usage_is_estimated_not_free(tmp_path, emulator, questions):
    spec = EmulatorSpec(latency=Latency(median_ms=2), faults=Faults(no_usage_rate=0.2), seed=3)
    emu = await emulator(spec, FairScript(questions))
    ctx, result = await teach(tmp_path, emu, questions[:20])
    stats = emu.stats().total
    assert result.problems == []
    report = cost_report(ctx)
    total = report.datasets[0].total
    assert total.usage_estimated > 0
    assert report.total_usd == pytest.approx(billed_usd(stats), rel=0.1)


# A generous max_tokens, as reasoning teachers need: each call's worst case is many
# times what it really costs, so reservations held by queued calls would stop the run.
BIG_MAX_TOKENS = "max_tokens = 2048\n"


async def _real_cost(emulator, tmp_path: Path, questions) -> float:
    emu = await emulator(EmulatorSpec(latency=Latency(median_ms=2)), FairScript(questions))
    await teach(tmp_path / "free", emu, questions, teacher_extra=BIG_MAX_TOKENS)
    return billed_usd(emu.stats().total)


@pytest.mark.parametrize(("share", "finishes"), [(1.25, True), (0.5, False)])
async def test_the_cap_binds_on_money_not_on_queues(tmp_path, emulator, questions, share, finishes):
    (tmp_path / "free").mkdir()
    real = await _real_cost(emulator, tmp_path, questions)
    cap = real * share
    spec = EmulatorSpec(latency=Latency(median_ms=20, sigma=0.5))
    emu = await emulator(spec, FairScript(questions))
    # The default samples_in_flight: hundreds of calls wait in line at once.
    _, result = await teach(tmp_path, emu, questions, teacher_extra=BIG_MAX_TOKENS, max_usd=cap)
    spent = billed_usd(emu.stats().total)
    assert spent <= cap
    if finishes:
        assert result.problems == [] and spent == pytest.approx(real, rel=1e-3)
    else:
        assert result.budget_reached and spent > 0.4 * real


async def test_a_teacher_out_of_quota_is_stopped_and_a_rerun_after_topping_up_resumes(tmp_path, emulator, questions):
    models = {m: ModelLimits() for _, _, m in TEACHERS}
    models["model-gemini"] = ModelLimits(quota_requests=60)
    spec = EmulatorSpec(latency=Latency(median_ms=5), models=models)
    started = time.monotonic()
    emu = await emulator(spec, FairScript(questions))
    _, result = await teach(tmp_path, emu, questions)
    stats = emu.stats()
    assert time.monotonic() - started < 60
    gemini = stats.models["model-gemini"]
    # Requests in flight when the quota ran out still finish, billed, as on a real account.
    assert gemini.billed_requests >= 60
    # The breaker stops sending: a few dozen refused requests at most, not one per call.
    assert 0 < gemini.quota_refused <= 36
    # The other teachers did all their work.
    assert stats.models["model-gpt"].completed >= 2 * len(questions)
    failed = [p.message for p in result.problems if p.kind == "call_failed"]
    named = [line for line in failed if "'gemini'" in line and "quota" in line]
    assert named
    assert all("\n" not in p.message for p in result.problems)
    assert any("rerun" in line for line in named)

    # Topped up: a fresh account; the rerun buys only what is missing.
    emu = await emulator(EmulatorSpec(latency=Latency(median_ms=5)), FairScript(questions))
    _, rerun = await teach(tmp_path, emu, questions)
    again = emu.stats()
    assert rerun.problems == []
    for name, s in again.models.items():
        first = stats.models[name].completed_keys
        assert not set(s.completed_keys) & {k for k, n in first.items() if n}, name


async def test_an_overload_burst_costs_time_not_failed_calls(tmp_path, emulator, questions):
    spec = EmulatorSpec(latency=Latency(median_ms=5), overloads=[Overload(start_s=0.2, duration_s=3.0)])
    emu = await emulator(spec, FairScript(questions))
    _, result = await teach(tmp_path, emu, questions[:40])
    stats = emu.stats().total
    assert stats.overloaded > 0
    assert result.problems == []


async def test_a_rerun_with_the_cap_counts_what_earlier_runs_may_have_been_billed(tmp_path, emulator, questions):
    # Attempts the first run abandoned stay counted against the cap of the next.
    faults = Faults(hang_rate=0.2, hang_s=30.0)
    spec = EmulatorSpec(latency=Latency(median_ms=2), faults=faults, seed=11)
    emu = await emulator(spec, FairScript(questions))
    ctx, _ = await teach(tmp_path, emu, questions[:10], teacher_extra="timeout_s = 0.3\nmax_attempts = 1\n")
    report = cost_report(ctx)
    assert report.possibly_usd > 0
    emu = await emulator(EmulatorSpec(), FairScript(questions))
    _, result = await teach(tmp_path, emu, questions[:10], max_usd=(report.total_usd or 0) + report.possibly_usd * 0.5)
    assert emu.stats().total.received == 0
    assert result.budget_reached
