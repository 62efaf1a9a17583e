"""The ledger over a store of hand-made rows, checked against hand sums (the rows are shared with the report tests)."""

from __future__ import annotations

import json

import msgspec
import pytest

from accounting import ledger
from core.samples import DecidedSample, RationaleOutcome
from reports.cost import build_cost_report
from store.calls import CallRow, Store, open_db

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0


def _call(
    teacher: str,
    stage: str,
    sample: str = "1",
    *,
    dataset: str = "svamp",
    target: str = "",
    status: str = "completed",
    tin: int = 100,
    tout: int = 50,
    usd: float | None = 0.001,
    retries: int = 0,
    h429: int = 0,
    error: str | None = None,
    at: float = 0.0,
    attempts: int = 1,
) -> CallRow:
    return CallRow(
        key=f"{dataset}:{sample}:{teacher}:{stage}:{target}:{at}",
        dataset=dataset,
        sample_id=sample,
        teacher=teacher,
        stage=stage,
        target=target,
        status=status,
        attempts=attempts,
        retries=retries,
        http_429=h429,
        input_tokens=tin,
        output_tokens=tout,
        usd=usd,
        latency_s=0.5,
        error=error,
        finished_at=T0 + at + 1,
    )


def _rationale(teacher: str, accepted: bool, text: str | None = "r") -> RationaleOutcome:
    return RationaleOutcome(teacher=teacher, text=text, accepted=accepted)


def _sample(sid: str, rationales: list[RationaleOutcome], included: bool) -> DecidedSample:
    return DecidedSample(
        id=sid,
        task="svamp",
        question="q",
        gold="1",
        student_answer="2",
        rationales=rationales,
        included=included,
    )


ROWS = [
    # sample 1: two teachers, everything completed; b's rationale retried twice after 429s
    _call("a", "rationale", "1", tin=100, tout=40, usd=0.002, at=0),
    _call("b", "rationale", "1", tin=110, tout=60, usd=0.003, retries=2, h429=2, at=1, attempts=3),
    _call("a", "feedback", "1", tin=120, tout=20, usd=0.001, at=2),
    _call("b", "feedback", "1", tin=130, tout=30, usd=0.004, at=3),
    _call("a", "review", "1", target="b", tin=200, tout=10, usd=0.0005, at=4),
    _call("b", "review", "1", target="a", tin=210, tout=12, usd=0.0007, at=5),
    # sample 2: b's rationale failed once then completed; a's review of it skipped (decided)
    _call("a", "rationale", "2", tin=90, tout=45, usd=0.0015, at=6),
    _call("b", "rationale", "2", status="failed", tin=0, tout=0, usd=None, retries=5, error="timeout", at=7),
    _call("b", "rationale", "2", tin=95, tout=55, usd=0.0025, at=8),
    _call("a", "feedback", "2", tin=100, tout=25, usd=0.001, at=9),
    _call("b", "feedback", "2", status="cached", tin=0, tout=0, usd=0.0, at=10),
    _call("a", "review", "2", target="b", status="skipped", tin=0, tout=0, usd=None, error="decided", at=11),
    _call("b", "review", "2", target="a", tin=190, tout=8, usd=0.0006, at=12),
    # sample 3: the cap withheld a's rationale; b's feedback failed for good
    _call("a", "rationale", "3", status="skipped", tin=0, tout=0, usd=None, error="budget", at=13),
    _call("b", "feedback", "3", status="failed", tin=0, tout=0, usd=0.0, error="401", at=14),
]

SAMPLES = [
    _sample("1", [_rationale("a", True), _rationale("b", True)], included=True),
    _sample("2", [_rationale("a", True), _rationale("b", False)], included=True),
    _sample("3", [_rationale("a", False, text=None), _rationale("b", True)], included=False),
]


async def _store(path, rows=ROWS, samples=SAMPLES, events=()):
    """A store holding `rows`, `samples` and `events` given as (kind, body, seconds after T0)."""
    async with Store.open(path / "store.sqlite") as store:
        for row in rows:
            await store.add_call(row)
        for i, s in enumerate(samples):
            await store.add_sample(s.task, s.id, i, msgspec.json.encode(s))
    conn = open_db(path / "store.sqlite")
    # Inserted directly: the store stamps events with the wall clock, the tests need fixed times.
    conn.executemany(
        "INSERT INTO events (at, kind, body) VALUES (?, ?, ?)",
        [(T0 + at, kind, json.dumps(body).encode()) for kind, body, at in events],
    )
    return conn


def _by(rows, teacher, stage):
    (row,) = [r for r in rows if r.teacher == teacher and r.stage == stage]
    return row


def _billed(teacher=None, stage=None):
    return [
        r
        for r in ROWS
        if r.status in ("completed", "failed")
        and (teacher is None or r.teacher == teacher)
        and (stage is None or r.stage == stage)
    ]


async def test_stage_ledger_equals_hand_sums(tmp_path):
    conn = await _store(tmp_path)
    rows = ledger.stage_ledger(conn, "svamp")
    assert [(r.teacher, r.stage) for r in rows] == [
        ("a", "rationale"),
        ("a", "feedback"),
        ("a", "review"),
        ("b", "rationale"),
        ("b", "feedback"),
        ("b", "review"),
    ]
    b_rat = _by(rows, "b", "rationale")
    assert (b_rat.calls, b_rat.failed, b_rat.retries, b_rat.http_429) == (2, 1, 7, 2)
    assert b_rat.input_tokens == 110 + 95 and b_rat.output_tokens == 60 + 55
    assert b_rat.usd == pytest.approx(0.003 + 0.0025)  # the failed row reported no usage: not unknown
    b_fb = _by(rows, "b", "feedback")
    assert (b_fb.calls, b_fb.failed, b_fb.cached) == (1, 1, 1)
    assert b_fb.usd == pytest.approx(0.004)
    assert _by(rows, "a", "review").skipped == {"decided": 1}
    assert _by(rows, "a", "rationale").skipped == {"budget": 1}
    total = ledger.totals(rows)
    billed = _billed()
    assert total.input_tokens == sum(r.input_tokens for r in billed)
    assert total.output_tokens == sum(r.output_tokens for r in billed)
    assert total.usd == pytest.approx(sum(r.usd or 0 for r in billed))
    completed = sum(r.status == "completed" for r in ROWS)
    assert (total.calls, total.failed, total.cached, total.skipped) == (completed, 2, 1, 2) and completed == 10


async def test_unknown_price_is_unknown_not_zero(tmp_path):
    rows = [*ROWS, _call("c", "rationale", "1", tin=10, tout=10, usd=None, at=20)]
    conn = await _store(tmp_path, rows=rows)
    stage_rows = ledger.stage_ledger(conn, "svamp")
    assert _by(stage_rows, "c", "rationale").usd is None
    assert _by(stage_rows, "a", "rationale").usd is not None
    assert ledger.totals(stage_rows).usd is None
    report = build_cost_report(conn)
    assert report.total_usd is None and report.datasets[0].usd_per_included is None


async def test_missing_slots_are_latest_failed_or_budget_and_never_completed(tmp_path):
    conn = await _store(tmp_path)
    missing = {(s.sample_id, s.teacher, s.stage, s.status) for s in ledger.missing_slots(conn)}
    # sample 2's failed rationale was completed later, and its decided-skip is not missing
    assert missing == {("3", "a", "rationale", "skipped"), ("3", "b", "feedback", "failed")}


async def test_savings_price_skipped_reviews_at_the_reviewers_mean(tmp_path):
    conn = await _store(tmp_path)
    saved = ledger.savings(conn, "svamp")
    assert saved.calls == 1 and saved.by_reason == {"decided": 1}
    assert saved.usd == pytest.approx(0.0005)  # a's only completed review cost


async def test_tokens_per_sample_without_and_with_review(tmp_path):
    conn = await _store(tmp_path)
    tps = ledger.tokens_per_sample(conn, "svamp")
    # a: rationale+feedback outputs over samples 1, 2; reviews 10 (sample 2's was skipped)
    assert tps["a"] == pytest.approx(((40 + 20 + 45 + 25) / 2, (40 + 20 + 45 + 25 + 10) / 2))
    # b: samples 1 and 2 (its cached feedback and failed calls bill nothing)
    assert tps["b"] == pytest.approx(((60 + 30 + 55) / 2, (60 + 30 + 55 + 12 + 8) / 2))


async def test_only_a_slots_latest_row_counts_as_skipped(tmp_path):
    rows = [
        _call("a", "review", "1", target="b", status="skipped", usd=None, error="budget", at=0),
        _call("a", "review", "1", target="b", at=1),  # the resumed run sent it
        _call("a", "review", "2", target="b", status="skipped", usd=None, error="decided", at=2),
        _call("a", "review", "2", target="b", status="skipped", usd=None, error="decided", at=3),  # re-skipped
    ]
    conn = await _store(tmp_path, rows=rows, samples=[])
    (row,) = ledger.stage_ledger(conn)
    assert row.skipped == {"decided": 1} and row.calls == 1
    assert ledger.missing_slots(conn) == []
    assert ledger.savings(conn, "svamp").calls == 1


async def test_billed_money_counts_on_every_row_that_sent_an_attempt(tmp_path):
    # A call cancelled mid-flight after a billed answer without text, and one the cap
    # skipped after a timed-out attempt: both were paid for (or may have been).
    rows = [
        _call("a", "rationale", "1", tin=100, tout=40, usd=0.002, at=0),
        msgspec.structs.replace(
            _call("b", "rationale", "1", status="cancelled", tin=80, tout=512, usd=0.0011, error="cancelled", at=1),
            possibly_usd=0.0015,
            possibly_attempts=1,
            unusable="truncated",
        ),
        msgspec.structs.replace(
            _call("a", "feedback", "1", status="skipped", tin=0, tout=0, usd=0.0, error="budget", at=2),
            possibly_usd=0.0012,
            possibly_attempts=1,
        ),
    ]
    conn = await _store(tmp_path, rows=rows, samples=[])
    total = ledger.totals(ledger.stage_ledger(conn, "svamp"))
    assert (total.input_tokens, total.output_tokens) == (180, 552)
    assert total.usd == pytest.approx(0.0031) and total.possibly_usd == pytest.approx(0.0027)
    assert total.unusable == 1
    assert ledger.committed_usd(conn) == pytest.approx((0.0031, 0.0027))
    report = build_cost_report(conn)
    assert report.total_usd == pytest.approx(0.0031) and report.possibly_usd == pytest.approx(0.0027)
