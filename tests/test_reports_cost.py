"""The cost report: its JSON shape and figures against hand sums, Table 4 acceptance, an empty store."""

from __future__ import annotations

import json

import pytest

from reports.cost import acceptance, build_cost_report, cost_report
from tests.test_ledger import ROWS, SAMPLES, _billed, _call, _store

pytestmark = pytest.mark.anyio


def test_acceptance_like_table_4():
    table = acceptance(SAMPLES)
    assert (table["a"].rationales, table["a"].accepted, table["a"].accepted_in_included) == (2, 2, 2)
    assert (table["b"].rationales, table["b"].accepted, table["b"].accepted_in_included) == (3, 2, 1)
    assert table["a"].rate == 1.0 and table["b"].rate == pytest.approx(2 / 3)
    assert table["a"].share_of_included == pytest.approx(2 / 3)
    assert table["b"].share_of_included == pytest.approx(1 / 3)


async def test_cost_report_files_have_the_agreed_shape(tmp_path):
    await _store(tmp_path, events=[("budget_reached", {"spent_usd": 0.02, "max_usd": 0.02}, 14)])
    report = cost_report(tmp_path)
    data = json.loads((tmp_path / "cost_report.json").read_text())
    assert set(data) >= {"datasets", "total_usd", "generated_at"}
    (ds,) = data["datasets"]
    assert set(ds) >= {
        "task",
        "rows",
        "total",
        "samples",
        "included",
        "usd_per_included",
        "acceptance",
        "tokens_per_sample",
        "saved",
        "stopped_at_budget",
    }
    assert set(ds["rows"][0]) >= {
        "teacher",
        "stage",
        "calls",
        "failed",
        "retries",
        "input_tokens",
        "output_tokens",
        "usd",
    }
    assert set(ds["acceptance"]["a"]) >= {"rationales", "accepted", "rate", "share_of_included"}
    assert set(ds["tokens_per_sample"]["b"]) == {"without_review", "with_review"}
    assert ds["samples"] == 3 and ds["included"] == 2 and ds["stopped_at_budget"] is True
    hand_usd = sum(r.usd or 0 for r in _billed())
    assert ds["total"]["usd"] == pytest.approx(hand_usd) and data["total_usd"] == pytest.approx(hand_usd)
    assert ds["usd_per_included"] == pytest.approx(hand_usd / 2)
    assert ds["saved"]["calls"] == 1
    for row in ds["rows"]:
        hand = _billed(row["teacher"], row["stage"])
        assert row["input_tokens"] == sum(r.input_tokens for r in hand)
        assert row["retries"] == sum(r.retries for r in ROWS if (r.teacher, r.stage) == (row["teacher"], row["stage"]))
    md = (tmp_path / "cost_report.md").read_text()
    assert "svamp: teacher calls and cost" in md and "spending cap" in md
    assert report.datasets[0].missing_calls == 2


async def test_cost_report_of_an_empty_store(tmp_path):
    conn = await _store(tmp_path, rows=[], samples=[])
    report = build_cost_report(conn, tasks=["gsm8k"])
    assert report.total_usd == 0.0 and report.datasets[0].samples == 0 and report.datasets[0].rows == []


async def test_budget_event_naming_datasets_marks_only_those(tmp_path):
    rows = [r for r in ROWS if r.error != "budget"] + [_call("a", "rationale", "1", dataset="gsm8k")]
    conn = await _store(
        tmp_path,
        rows=rows,
        samples=[],
        events=[("budget_reached", {"max_usd": 1.0, "datasets": {"gsm8k": {"not_started": 4}}}, 30)],
    )
    report = build_cost_report(conn)
    stopped = {d.task: d.stopped_at_budget for d in report.datasets}
    assert stopped == {"svamp": False, "gsm8k": True}  # svamp's one failed call is not the cap's doing


def test_table_4_as_the_paper_counts_it_is_the_picked_rationales_teacher():
    from dataset.writer import picked_teacher

    table = acceptance(SAMPLES, seed=5)
    included = [s for s in SAMPLES if s.included]
    assert sum(a.picked for a in table.values()) == len(included)
    for name, a in table.items():
        assert a.picked == sum(picked_teacher(s, 5) == name for s in included)
    assert sum(a.picked_share for a in table.values() if a.picked_share) == pytest.approx(1.0)
