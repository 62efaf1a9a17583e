"""Batch mode in the ledger and the cost report: a mode per row (both for a teacher that fell back), batch counts."""

from __future__ import annotations

import json

import msgspec
import pytest

from accounting import ledger
from accounting.batch_counts import batch_counts, batch_views
from reports.cost import cost_report
from store.batches import BatchClosed, BatchPlanned, BatchPolled, BatchSubmitted, record_batch_event
from store.calls import CallSlot, Store, open_db
from tests.test_ledger import _call

pytestmark = pytest.mark.anyio


def _slot(sample: str, stage: str = "rationale", *, dataset: str = "svamp", target: str = "") -> CallSlot:
    return CallSlot(
        key=f"{dataset}:{sample}:{stage}:{target}",
        dataset=dataset,
        sample_id=sample,
        teacher="a",
        stage=stage,
        target=target,
    )


def _batch(row, local_id: str):
    return msgspec.structs.replace(row, mode="batch", batch=local_id)


# Teacher a is in batch mode: two rationales answered in batch b1 (at batch prices), sample 2's failed
# there and again in b2 (which expired), then fell back to the sync lane. Teacher b is sync throughout.
ROWS = [
    _batch(_call("a", "rationale", "1", tin=100, tout=40, usd=0.001, at=0), "b1"),
    _batch(_call("a", "rationale", "3", dataset="gsm8k", tin=100, tout=40, usd=0.001, at=0), "b1"),
    _batch(_call("a", "rationale", "2", status="failed", tin=0, tout=0, usd=0.0, error="server", at=1), "b1"),
    _batch(_call("a", "rationale", "2", status="failed", tin=0, tout=0, usd=0.0, error="expired", at=2), "b2"),
    _call("a", "rationale", "2", tin=100, tout=40, usd=0.002, at=3),
    _call("b", "rationale", "1", tin=100, tout=40, usd=0.002, at=4),
]


async def _batch_store(path):
    async with Store.open(path / "store.sqlite") as store:
        for row in ROWS:
            await store.add_call(row)
        first = (_slot("1"), _slot("2"), _slot("3", dataset="gsm8k"))
        await record_batch_event(
            store, "a", BatchPlanned(local_id="b1", teacher="a", provider="openai", tag="t1", slots=first)
        )
        await record_batch_event(store, "a", BatchSubmitted(local_id="b1", batch_id="batch_abc"))
        await record_batch_event(store, "a", BatchPolled(local_id="b1", state="completed", succeeded=2, errored=1))
        await record_batch_event(store, "a", BatchClosed(local_id="b1", state="completed"))
        await record_batch_event(
            store, "a", BatchPlanned(local_id="b2", teacher="a", provider="openai", tag="t2", slots=(_slot("2"),))
        )
        await record_batch_event(store, "a", BatchSubmitted(local_id="b2", batch_id="batch_def"))
        await record_batch_event(store, "a", BatchClosed(local_id="b2", state="expired", error="24h window passed"))
        await record_batch_event(
            store,
            "a",
            BatchPlanned(
                local_id="b3", teacher="a", provider="openai", tag="t3", slots=(_slot("4", "review", target="b"),)
            ),
        )
    return open_db(path / "store.sqlite")


async def test_ledger_rows_carry_the_mode_and_a_fallen_back_teacher_shows_both(tmp_path):
    conn = await _batch_store(tmp_path)
    rows = [(r.teacher, r.mode, r.stage, r.calls, r.failed, r.usd) for r in ledger.stage_ledger(conn, "svamp")]
    assert rows == [
        ("a", "sync", "rationale", 1, 0, pytest.approx(0.002)),
        ("a", "batch", "rationale", 1, 2, pytest.approx(0.001)),
        ("b", "sync", "rationale", 1, 0, pytest.approx(0.002)),
    ]
    assert ledger.totals(ledger.stage_ledger(conn)).usd == pytest.approx(0.006)


async def test_batch_counts_per_teacher_and_dataset(tmp_path):
    conn = await _batch_store(tmp_path)
    (run,) = batch_counts(conn)
    assert (run.teacher, run.batches, run.requests, run.resubmitted) == ("a", 3, 5, 1)
    assert (run.expired, run.failed, run.cancelled, run.open) == (1, 0, 0, 1)
    assert (run.succeeded, run.errored) == (2, 1)
    (svamp,) = batch_counts(conn, "svamp")
    assert (svamp.batches, svamp.requests, svamp.resubmitted, svamp.expired) == (3, 4, 1, 1)
    (gsm8k,) = batch_counts(conn, "gsm8k")
    assert (gsm8k.batches, gsm8k.requests, gsm8k.resubmitted) == (1, 1, 0)
    assert batch_counts(conn, "aqua") == []
    views = batch_views(conn, now=1e12)
    assert [(v.local_id, v.provider_id, v.state, v.requests, v.closed) for v in views] == [
        ("b1", "batch_abc", "completed", 3, True),
        ("b2", "batch_def", "expired", 1, True),
        ("b3", None, "planned", 1, False),
    ]
    # Closed batches stop ageing; an open one keeps going.
    assert views[0].age_s < 60 and views[2].age_s > 1e9
    assert [v.local_id for v in batch_views(conn, open_only=True)] == ["b3"]


async def test_cost_report_has_a_mode_column_and_batch_counts(tmp_path):
    await _batch_store(tmp_path)
    report = cost_report(tmp_path, tasks=["svamp", "gsm8k"])
    data = json.loads((tmp_path / "cost_report.json").read_text())
    svamp = data["datasets"][0]
    assert [(r["teacher"], r["mode"]) for r in svamp["rows"]] == [("a", "sync"), ("a", "batch"), ("b", "sync")]
    assert svamp["batches"][0]["requests"] == 4 and svamp["batches"][0]["expired"] == 1
    assert data["batches"][0]["batches"] == 3 and report.batches[0].resubmitted == 1
    md = (tmp_path / "cost_report.md").read_text()
    assert "| teacher | mode | stage |" in md
    assert "svamp: batches per teacher" in md and "at batch prices" in md


async def test_a_sync_only_run_has_no_batch_table(tmp_path):
    async with Store.open(tmp_path / "store.sqlite") as store:
        await store.add_call(_call("b", "rationale", "1"))
    report = cost_report(tmp_path)
    assert report.batches == [] and report.datasets[0].batches == []
    assert "batches per teacher" not in (tmp_path / "cost_report.md").read_text()


async def test_run_report_gets_a_batch_section_when_there_were_batches(tmp_path):
    from reports.run_report import run_report

    (await _batch_store(tmp_path)).close()
    report = run_report(tmp_path)
    assert [b.local_id for b in report.batches] == ["b1", "b2", "b3"] and report.batch_counts[0].batches == 3
    md = (tmp_path / "report.md").read_text()
    assert "Batches per teacher (the whole run)" in md and "batch_def" in md and "expired" in md
    assert json.loads((tmp_path / "cost_report.json").read_text())["batches"][0]["resubmitted"] == 1
    sync_only = tmp_path / "sync"
    sync_only.mkdir()
    async with Store.open(sync_only / "store.sqlite") as store:
        await store.add_call(_call("b", "rationale", "1"))
    assert "Batches" not in (run_report(sync_only), (sync_only / "report.md").read_text())[1]
