"""The offline demo end to end with the authors' prompt set (`[run] prompts = "paper"`).

Slow: the real SmolLM2-135M sits the exam with the authors' exam prompt, the scripted
teachers answer the authors' teacher prompts, and a short fine-tune trains on their records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_demo import ROOT, small_demo

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)
def test_demo_runs_end_to_end_with_the_paper_prompts(tmp_path: Path) -> None:
    cfg = small_demo(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text.replace("seed = 731\n", 'seed = 731\nprompts = "paper"\n', 1))
    done = subprocess.run(
        [sys.executable, "run.py", "--config", str(cfg), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert records, "no sample was included"
    # SVAMP records keep the bare question and the gold the authors' feedback record shows.
    assert all(r["gold"] and "### " not in r["question"] for r in records)
    assert (run / "model").is_dir() and (run / "eval.json").is_file()
