"""The --dry-run forecast: exact call counts, token estimates against a hand computation, wall bounds."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from accounting.forecast import DEFAULT_OUTPUT_TOKENS, forecast, print_forecast
from core.config import Config, DatasetSection, ReviewSection, RunSection, TeacherSection
from core.records import Mistake, Question
from engine.tokens import estimate_tokens
from prompts.messages import teacher_messages
from store.calls import CallRow, open_db

MISTAKES = [
    Mistake(
        id=str(i),
        task="svamp",
        question=f"Tom has {i + 3} apples and buys {2 * i + 5} more. How many now?",
        gold=str(3 * i + 8),
        student_answer=f"He has {i} apples. The answer is {i}.",
        student_final_answer=str(i),
    )
    for i in range(5)
]


def _teacher(name: str, **kw) -> TeacherSection:
    base = dict(provider="openai", model="gpt-3.5-turbo", api_key_env="K", rpm=60.0, tpm=1_000_000.0, max_in_flight=8)
    return TeacherSection(name=name, **{**base, **kw})


def _config(teachers: list[TeacherSection], max_usd: float | None = None) -> Config:
    return Config(
        run=RunSection(name="t", out_dir="/nonexistent"),
        datasets=[DatasetSection(task="svamp")],
        teachers=teachers,
        review=ReviewSection(max_usd=max_usd),
    )


def _hand_prompt(stage: str, m: Mistake) -> int:
    (msg,) = teacher_messages(stage, m, rationale="" if stage == "review" else None)
    return estimate_tokens(msg.content) + 3 + 3  # one message's framing + the reply's


def test_call_counts_and_tokens_match_a_hand_computation():
    teachers = [_teacher("a"), _teacher("b", model="my-model"), _teacher("c", max_tokens=100)]
    fc = forecast(_config(teachers), {"svamp": MISTAKES}, latency_s=1.0)
    n, t = len(MISTAKES), len(teachers)
    (ds,) = fc.datasets
    rows = {(r.teacher, r.stage): r for r in ds.rows}
    for name in "abc":
        assert rows[(name, "rationale")].calls == n
        assert rows[(name, "feedback")].calls == n
        assert rows[(name, "review")].calls == n * (t - 1)
    assert ds.calls == fc.calls == n * t * 2 + n * t * (t - 1)

    hand = {s: sum(_hand_prompt(s, m) for m in MISTAKES) for s in ("rationale", "feedback", "review")}
    assert rows[("a", "rationale")].input_tokens == hand["rationale"]
    assert rows[("a", "feedback")].input_tokens == hand["feedback"]
    # a reviews b's and c's rationales; c's answers are capped at its max_tokens (100)
    assert rows[("a", "review")].input_tokens == 2 * hand["review"] + n * (200 + 100)
    assert rows[("c", "review")].input_tokens == 2 * hand["review"] + n * (200 + 200)
    assert rows[("a", "rationale")].output_tokens == n * DEFAULT_OUTPUT_TOKENS["rationale"]
    assert rows[("c", "feedback")].output_tokens == n * 100
    assert rows[("a", "review")].output_tokens == 2 * n * DEFAULT_OUTPUT_TOKENS["review"]

    r = rows[("a", "rationale")]
    assert r.usd == pytest.approx((r.input_tokens * 0.5 + r.output_tokens * 1.5) / 1e6)
    assert rows[("b", "rationale")].usd is None and ds.usd is None and fc.usd is None  # unknown model price

    # 20 calls per teacher at 60 rpm: 20 s, the binding limit (in-flight: 20 x 1 s / 8)
    walls = {w.teacher: w for w in fc.teachers}
    assert walls["a"].rpm_s == pytest.approx(20.0) and walls["a"].bound == "rpm"
    assert walls["a"].in_flight_s == pytest.approx(20 * 1.0 / 8)
    assert fc.wall_s == pytest.approx(20.0)


def test_tpm_and_in_flight_bounds_and_the_slowest_teacher_sets_the_wall():
    teachers = [_teacher("a", rpm=None, tpm=6000.0), _teacher("b", rpm=None, tpm=None, max_in_flight=1)]
    fc = forecast(_config(teachers), {"svamp": MISTAKES}, latency_s=2.0)
    walls = {w.teacher: w for w in fc.teachers}
    a_tokens = sum(r.input_tokens + r.output_tokens for r in fc.datasets[0].rows if r.teacher == "a")
    assert walls["a"].bound == "tpm" and walls["a"].tpm_s == pytest.approx(a_tokens / 100.0, rel=1e-3)
    assert walls["b"].bound == "in_flight" and walls["b"].wall_s == pytest.approx(15 * 2.0)
    assert fc.wall_s == max(walls["a"].wall_s, walls["b"].wall_s)


def test_measured_output_lengths_from_a_store_replace_the_defaults(tmp_path):
    conn = open_db(tmp_path / "store.sqlite")
    for i, tout in enumerate((70, 90)):
        row = CallRow(
            key=f"k{i}",
            dataset="svamp",
            sample_id=str(i),
            teacher="a",
            stage="rationale",
            status="completed",
            output_tokens=tout,
        )
        conn.execute(
            "INSERT INTO calls (key, dataset, sample_id, teacher, stage, target, status, attempts, retries, "
            "http_429, input_tokens, output_tokens, latency_s, finished_at) "
            "VALUES (?, ?, ?, ?, ?, '', ?, 1, 0, 0, 0, ?, 0, 0)",
            (row.key, row.dataset, row.sample_id, row.teacher, row.stage, row.status, row.output_tokens),
        )
    # b is another model: a's measured lengths say nothing about it
    fc = forecast(_config([_teacher("a"), _teacher("b", model="other-model")]), {"svamp": MISTAKES}, store=conn)
    rows = {(r.teacher, r.stage): r for r in fc.datasets[0].rows}
    n = len(MISTAKES)
    assert fc.output_tokens_source == "store, defaults"
    assert rows[("a", "rationale")].source == "store" and rows[("b", "rationale")].source == "defaults"
    assert rows[("a", "rationale")].output_tokens == n * 80
    assert rows[("b", "rationale")].output_tokens == n * 200  # nothing measured for b: default
    hand_review = sum(_hand_prompt("review", m) for m in MISTAKES)
    assert rows[("b", "review")].input_tokens == hand_review + n * 80


def test_questions_scaled_by_the_mistake_rate_and_the_cap_noted(tmp_path):
    questions = [Question(id=m.id, task="svamp", question=m.question, gold=m.gold) for m in MISTAKES * 2]
    fc = forecast(_config([_teacher("a"), _teacher("b")], max_usd=1e-6), {"svamp": questions}, mistake_rate=0.5)
    (ds,) = fc.datasets
    assert ds.assumed and ds.mistakes == 5 and ds.calls == 5 * 2 * 2 + 5 * 2
    console = Console(record=True, width=160)
    print_forecast(fc, console, out_dir=tmp_path)
    text = console.export_text()
    assert "assumed mistakes" in text and "spending cap" in text
    saved = json.loads((tmp_path / "forecast.json").read_text())
    assert saved["calls"] == fc.calls and saved["datasets"][0]["mistakes"] == 5


def test_t_quantiles_table_and_series():
    from accounting.pilot import t95

    assert t95(1) == 6.314 and t95(19) == 1.729 and t95(30) == 1.697
    for df, exact in ((31, 1.6955), (60, 1.6706), (120, 1.6577)):
        assert t95(df) == pytest.approx(exact, abs=1e-3)


def test_extrapolation_by_hand_and_at_the_edges():
    from accounting.pilot import estimate_count, extrapolate

    total = extrapolate([1.0, 2.0, 3.0, 6.0], 20)  # mean 3, s = sqrt(14/3)
    half = 2.353 * 20 * (14 / 3) ** 0.5 * ((1 - 4 / 20) / 4) ** 0.5
    assert total.value == pytest.approx(60.0)
    assert (total.low, total.high) == (pytest.approx(60 - half), pytest.approx(60 + half))
    every = extrapolate([1.0, 2.0], 2)
    assert every.low == every.value == every.high == 3.0  # everything measured: nothing to guess
    one = extrapolate([5.0], 10)
    assert one.value == 50.0 and one.low is None and one.high is None

    all_wrong = estimate_count(16, 16, 40)
    assert all_wrong.value == 40 and 16 < all_wrong.low < 40 and all_wrong.high == 40
    census = estimate_count(3, 40, 40)
    assert census.low == census.value == census.high == 3


def test_a_pilot_is_scaled_to_the_dataset_and_an_unknown_price_stays_unknown():
    from accounting.calibration import SampleCalls
    from accounting.pilot import Pilot

    def calls(sid: str, teacher: str, usd: float | None) -> list[SampleCalls]:
        return [
            SampleCalls(
                sample_id=sid,
                teacher=teacher,
                stage=stage,
                calls=1,
                input_tokens=100,
                output_tokens=10 * (1 + int(sid)),
                usd=usd,
                latency_s=2.0,
            )
            for stage in ("rationale", "feedback", "review")
        ]

    pilot = Pilot(
        task="svamp",
        sample_ids=["0", "1"],
        calls=[c for sid in "01" for c in calls(sid, "a", 0.01) + calls(sid, "b", None)],
    )
    teachers = [_teacher("a", rpm=None, max_in_flight=1), _teacher("b", model="my-model")]
    fc = forecast(_config(teachers), {"svamp": MISTAKES}, pilots={"svamp": pilot})
    (ds,) = fc.datasets
    rows = {(r.teacher, r.stage): r for r in ds.rows}
    r = rows[("a", "review")]
    assert (r.calls, r.input_tokens, r.output_tokens) == (5, 500, 75) and r.usd == pytest.approx(0.05)
    assert r.source == "pilot (2 of 5)" and r.usd_low == pytest.approx(0.05)  # every sample cost the same
    assert rows[("b", "rationale")].usd is None and ds.usd is None and fc.usd_low is None
    assert ds.pilot_samples == 2 and ds.pilot_usd is None  # b's price is unknown
    a = {w.teacher: w for w in fc.teachers}["a"]
    # 3 of the 5 mistakes still to send, 3 calls each, 2 s per call measured, one at a time
    assert a.latency_source == "pilot" and a.calls == 9 and a.in_flight_s == pytest.approx(18.0)


def test_history_matches_teachers_by_model_across_names(tmp_path):
    import msgspec

    from accounting.calibration import open_run_store, read_history

    conn = open_db(tmp_path / "store.sqlite")
    conn.execute(
        "INSERT INTO events (at, kind, body) VALUES (0, 'teachers', ?)",
        (msgspec.json.encode({"old-name": "my-model"}),),
    )
    conn.execute(
        "INSERT INTO calls (key, dataset, sample_id, teacher, stage, target, status, attempts, retries, "
        "http_429, input_tokens, output_tokens, latency_s, finished_at) "
        "VALUES ('k', 'svamp', '0', 'old-name', 'feedback', '', 'completed', 1, 0, 0, 0, 42, 1.5, 0)"
    )
    conn.close()
    history = read_history(open_run_store(tmp_path), "store of x")
    fc = forecast(
        _config([_teacher("new-name", model="my-model"), _teacher("b")]), {"svamp": MISTAKES}, history=[history]
    )
    rows = {(r.teacher, r.stage): r for r in fc.datasets[0].rows}
    assert rows[("new-name", "feedback")].output_tokens == 42 * len(MISTAKES)
    assert rows[("new-name", "feedback")].source == "store of x" and rows[("b", "feedback")].source == "defaults"
    walls = {w.teacher: w for w in fc.teachers}
    assert walls["new-name"].latency_s == 1.5 and walls["new-name"].latency_source == "store of x"
