"""A smoke run of `python -m bench.throughput` with tiny numbers: nothing lost, the JSON keys there."""

from __future__ import annotations

import json
from pathlib import Path

from bench import throughput

KEYS = {
    "concurrency",
    "requests",
    "completed",
    "failed",
    "lost",
    "wall_s",
    "req_per_s",
    "out_tokens_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "http_429",
    "retries",
    "bound_s",
    "efficiency",
}


def test_benchmark_smoke_run_loses_nothing_and_writes_json_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "runs.json", tmp_path / "runs.png"
    throughput.main(
        [
            "--requests",
            "40",
            "--rpm",
            "3000",
            "--latency-ms",
            "5",
            "--latency-sigma",
            "0.3",
            "--concurrency",
            "4",
            "8",
            "--providers",
            "2",
            "--wire",
            "mixed",
            "--fail-rate",
            "0.05",
            "--baseline",
            "gather",
            "sequential",
            "--sequential-requests",
            "12",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    document = json.loads(out.read_text())
    runs = document["runs"]
    assert [(r["mode"], r["concurrency"]) for r in runs] == [
        ("engine", 4),
        ("gather", 4),
        ("engine", 8),
        ("gather", 8),
        ("sequential", 1),
    ]
    for run in runs:
        assert run.keys() >= KEYS
        assert run["lost"] == 0 and run["completed"] + run["failed"] == run["requests"]
        assert run["duplicated"] == 0 and run["billed_unrecorded"] == 0
        assert run["bound_s"] > 0 and run["efficiency"] > 0
        assert run["requests"] == (12 if run["mode"] == "sequential" else 40)
    engine = [r for r in runs if r["mode"] == "engine"]
    assert all(r["server_completed"] == r["completed"] for r in engine)
    assert "load average" in document["load"]
    assert plot.stat().st_size > 0


def test_bound_takes_the_binding_limit_and_the_initial_burst() -> None:
    settings, _, _ = throughput.parse_args(["--rpm", "1200", "--latency-ms", "300", "--latency-sigma", "0"])
    bound, binding = throughput.bound_s(settings, 1200, 64, input_tokens=100, output_tokens=20)
    # 20 requests ride the initial burst; the other 1,180 at 20/s, plus one latency.
    assert binding == "rpm" and abs(bound - (1180 / 20 + 0.3)) < 1e-9
    bound, binding = throughput.bound_s(settings, 1200, 2, input_tokens=100, output_tokens=20)
    assert binding == "concurrency" and abs(bound - 1200 * 0.3 / 2) < 1e-9
    settings, _, _ = throughput.parse_args(
        ["--rpm", "1200", "--tpm", "60000", "--burst-s", "3", "--max-tokens", "512", "--latency-ms", "300"]
    )
    bound, binding = throughput.bound_s(settings, 600, 64, input_tokens=100, output_tokens=20)
    assert binding == "tpm" and abs(bound - ((600 * 120 - 3000) / 1000 + 0.3)) < 1e-9


def test_realistic_scenarios_lose_nothing_and_every_billed_request_is_on_record(tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    throughput.main(
        [
            "--requests",
            "300",
            "--rpm",
            "3000",
            "--tpm",
            "600000",
            "--latency-ms",
            "20",
            "--latency-sigma",
            "0.3",
            "--concurrency",
            "8",
            "--providers",
            "3",
            "--wire",
            "mixed",
            "--quota-requests",
            "30",
            "--overload",
            "0.3",
            "0.5",
            "--no-tpm-refund",
            "--bill-abandoned",
            "--hang-rate",
            "0.03",
            "--timeout-s",
            "0.5",
            "--json",
            str(out),
        ]
    )
    [run] = json.loads(out.read_text())["runs"]
    assert (run["lost"], run["duplicated"], run["billed_unrecorded"]) == (0, 0, 0)
    # The first teacher stops at its quota (30 billed requests, abandoned ones included) after a
    # few refusals; the other two finish their 100 each.
    assert 200 < run["completed"] <= 230 and 0 < run["quota_refused"] <= 24
    assert run["server_billed"] >= run["client_billed"] == run["completed"]
    assert run["binding"].endswith("+overload")


def test_bound_without_tpm_refund_keeps_max_tokens_and_an_overload_window_adds_its_length() -> None:
    settings, _, _ = throughput.parse_args(
        ["--tpm", "60000", "--max-tokens", "512", "--latency-ms", "300", "--latency-sigma", "0", "--no-tpm-refund"]
    )
    bound, binding = throughput.bound_s(settings, 600, 64, input_tokens=100, output_tokens=20)
    assert binding == "tpm" and abs(bound - ((600 * 612 - 1000) / 1000 + 0.3)) < 1e-9
    settings, _, _ = throughput.parse_args(
        ["--rpm", "1200", "--latency-ms", "300", "--latency-sigma", "0", "--overload", "10", "15"]
    )
    bound, binding = throughput.bound_s(settings, 1200, 64, input_tokens=100, output_tokens=20)
    assert binding == "rpm+overload" and abs(bound - (1180 / 20 + 0.3 + 15)) < 1e-9
    bound, _ = throughput.bound_s(settings, 100, 64, input_tokens=100, output_tokens=20)
    assert bound < 10  # done before the window opens: it costs nothing


def test_billed_unrecorded_matches_requests_not_totals() -> None:
    # The emulator billed a and b; the client recorded a as billed and c as possibly
    # billed (never billed). Totals say 2 billed, 2 on record: 0 unrecorded. Per request, b is.
    from emulator import EmulatorStats, ModelStats

    model = ModelStats(billed_requests=2, billed_keys={"a": 1, "b": 1})
    server = EmulatorStats(models={"m": model}, total=ModelStats(billed_requests=2))
    tally = throughput.Tally()
    tally.billed, tally.possibly_billed, tally.recorded_keys = 1, 1, {"a", "c"}
    assert throughput.billed_unrecorded(server, tally, "engine") == 1
