"""A smoke run of `python -m bench.throughput` with tiny numbers: nothing lost, the JSON keys there."""

from __future__ import annotations

import json
from pathlib import Path

from bench import throughput

KEYS = {"concurrency", "requests", "completed", "failed", "lost", "wall_s", "req_per_s", "out_tokens_per_s",
        "p50_ms", "p95_ms", "p99_ms", "http_429", "retries", "bound_s", "efficiency"}


def test_benchmark_smoke_run_loses_nothing_and_writes_json_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "runs.json", tmp_path / "runs.png"
    throughput.main([
        "--requests", "40", "--rpm", "3000", "--latency-ms", "5", "--latency-sigma", "0.3",
        "--concurrency", "4", "8", "--providers", "2", "--wire", "mixed", "--fail-rate", "0.05",
        "--baseline", "gather", "sequential", "--sequential-requests", "12",
        "--json", str(out), "--plot", str(plot),
    ])
    document = json.loads(out.read_text())
    runs = document["runs"]
    assert [(r["mode"], r["concurrency"]) for r in runs] == [
        ("engine", 4), ("gather", 4), ("engine", 8), ("gather", 8), ("sequential", 1)
    ]
    for run in runs:
        assert KEYS <= run.keys()
        assert run["lost"] == 0 and run["completed"] + run["failed"] == run["requests"]
        assert run["server_duplicates"] == 0
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
    settings, _, _ = throughput.parse_args(["--rpm", "1200", "--tpm", "60000", "--burst-s", "3",
                                            "--max-tokens", "512", "--latency-ms", "300"])
    bound, binding = throughput.bound_s(settings, 600, 64, input_tokens=100, output_tokens=20)
    assert binding == "tpm" and abs(bound - ((600 * 120 - 3000) / 1000 + 0.3)) < 1e-9
