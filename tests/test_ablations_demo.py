"""The paper's ablation set on the demo data, offline: one command, one table, one plot.

The demo config with a tiny random student (the mechanism is under test, not the
student: the real SmolLM2 runs the method end to end in test_demo.py): it sits the
exam, the scripted teachers answer once, and each variant trains a short student on
its own records from the same samples and is evaluated.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.test_demo import ROOT, small_demo

# One of each kind (a single teacher, no review, an alpha): the whole default set is 7 variants, 6 of them trained.
VARIANTS = "fair,single_gpt,no_review,alpha_1"


def test_the_ablation_set_runs_on_the_demo_and_writes_its_table_and_plot(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = small_demo(tmp_path)
    text = cfg.read_text().replace("max_steps = 3\nsave_every_steps = 1\n", "max_steps = 2\n")
    text = text.replace('model = "smollm2-135m-instruct"', f'model = "{tiny_model_dir}"', 1)
    assert str(tiny_model_dir) in text
    cfg.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "stages.ablations", "--config", str(cfg), "--variants", VARIANTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    rows = json.loads((run / "ablations.json").read_text())
    variants = [r["variant"] for r in rows]
    assert variants == VARIANTS.split(",")
    assert all(r["eval"] is not None for r in rows if r["included"])
    assert (run / "plots" / "ablations.png").stat().st_size > 0
    assert "| no_review | svamp |" in (run / "ablations.md").read_text()
    # The whole set bought each teacher answer once: the variants sent nothing.
    calls = (
        sqlite3.connect(run / "store.sqlite")
        .execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls WHERE status = 'completed'")
        .fetchone()
    )
    assert calls[0] == calls[1]
