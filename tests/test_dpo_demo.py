"""The dpo stage on the demo's SVAMP questions, as a user runs it: teach with scripted teachers, then
`run.py --stage dpo` on the real SmolLM2-135M (slow: a couple of minutes on 2 CPU cores)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from emulator import EmulatorSpec, Latency, ModelLimits
from emulator.fair_script import FairScript
from tests.conftest import TEACHERS, authors_file, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def run_stage(cfg: Path, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", "--config", str(cfg), "--stage", stage, "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip


async def test_dpo_stage_runs_on_the_demo_and_writes_its_own_model(tmp_path, emulator, monkeypatch):
    from tasks import load_split

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    questions = load_split("svamp", "demo", "train", limit=12)
    limits = {model: ModelLimits(rpm=6000) for _, _, model in TEACHERS}
    emu = await emulator(EmulatorSpec(models=limits, latency=Latency(median_ms=5, sigma=0.0)), FairScript(questions))
    cfg = write_config(tmp_path, emu, {"svamp": authors_file(tmp_path / "m.json", "svamp", questions)})
    teach = await anyio.to_thread.run_sync(run_stage, cfg, "teach")
    assert teach.returncode == 0, teach.stderr[-2000:]
    out = tmp_path / "run"
    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)

    cfg.write_text(
        cfg.read_text()
        + (
            '\n[student]\nmodel = "smollm2-135m-instruct"\n\n[train]\nmax_length = 256\n\n'
            "[dpo]\nmax_steps = 2\nmicro_batch_size = 2\nlr = 1e-5\n"
        )
    )
    dpo = run_stage(cfg, "dpo")
    assert dpo.returncode == 0, dpo.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "dpo_log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert (out / "model_dpo" / "model.safetensors").is_file() and (out / "model_dpo" / "README.md").is_file()
