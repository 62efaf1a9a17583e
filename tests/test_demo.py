"""The offline demo end to end, as a user runs it: `python run.py --config <demo>`.

Slow: the real SmolLM2-135M answers the exam and the evals and is fine-tuned with
DeepSpeed on CPU. The run is killed with SIGKILL during teach and during train;
rerunning finishes it, and no answered teacher call is ever bought twice.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def small_demo(tmp_path: Path) -> Path:
    """configs/demo.toml with a smaller exam, short answers and a two-step fine-tune."""
    text = (ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('out_dir = "../runs/demo"', f'out_dir = "{tmp_path / "run"}"')
    text = text.replace("\nlimit = 24", "\nlimit = 16").replace("\ntest_limit = 16", "\ntest_limit = 8")
    text = text.replace("max_new_tokens = 160", "max_new_tokens = 48")
    text = text.replace("max_steps = 4 ", "max_steps = 3\nsave_every_steps = 1\n# ")
    assert "\nlimit = 16" in text and "\ntest_limit = 8" in text and "max_steps = 3" in text
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "run.py", "--config", str(cfg), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(proc: subprocess.Popen, ready, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"run ended before the kill point: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def completed_calls(db: Path) -> int:
    try:
        conn = sqlite3.connect(db)
        return conn.execute("SELECT count(*) FROM calls WHERE status = 'completed'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


# Three runs and a rerun, each waited on for up to 15-30 min below: pytest's 10-minute default is for one test.
@pytest.mark.timeout(3600)
def test_demo_survives_sigkill_in_teach_and_train(tmp_path):
    cfg = small_demo(tmp_path)
    out = tmp_path / "run"
    db = out / "store.sqlite"

    kill_when(start(cfg), lambda: db.exists() and completed_calls(db) >= 10)
    kill_when(start(cfg), lambda: any((out / "checkpoints").glob("*")) if (out / "checkpoints").exists() else False)
    final = start(cfg)
    _, stderr = final.communicate(timeout=1800)
    assert final.returncode == 0, stderr[-3000:]

    conn = sqlite3.connect(db)
    twice = conn.execute(
        "SELECT key, count(*) FROM calls WHERE status = 'completed' GROUP BY key HAVING count(*) > 1"
    ).fetchall()
    assert twice == [], "an answered call was bought again"
    mistakes = [json.loads(line) for line in (out / "mistakes.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(samples) == len(mistakes) > 0 and all(not s["missing"] for s in samples)
    evals = json.loads((out / "eval.json").read_text())["evals"]
    assert {e["checkpoint"] for e in evals} == {"base", "model"}
    assert all(e["n"] == 8 for e in evals)
    assert (out / "model" / "config.json").exists()
    for name in ("report.md", "report.json", "cost_report.json", "cost_report.md", "train_log.jsonl"):
        assert (out / name).exists(), name
    assert list((out / "plots").glob("*.png"))

    # Rerunning a finished run does nothing and costs nothing.
    before = completed_calls(db)
    again = subprocess.run(
        [sys.executable, "run.py", "--config", str(cfg), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert completed_calls(db) == before
