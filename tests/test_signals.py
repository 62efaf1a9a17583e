"""Signals and processes: SIGTERM stops a run like Ctrl-C (exit 143), and no child outlives a killed parent."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from emulator import EmulatorSpec, Latency
from emulator.fair_script import FairScript
from tasks import load_split
from tests.conftest import authors_file, until_answered, write_config

ROOT = Path(__file__).resolve().parents[1]


def _statuses(out_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(out_dir / "store.sqlite")
    try:
        return dict(conn.execute("SELECT status, count(*) FROM calls GROUP BY status").fetchall())
    finally:
        conn.close()


def _teach(cfg: Path) -> list[str]:
    return [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"]


@pytest.mark.anyio
async def test_sigterm_mid_teach_saves_everything_and_a_rerun_reaches_the_same_dataset(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")
    spec = EmulatorSpec(latency=Latency(median_ms=300, sigma=0.3))
    emu = await emulator(spec, FairScript(qs))
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    (tmp_path / "ref").mkdir()
    (tmp_path / "term").mkdir()
    ref = await anyio.run_process(
        _teach(write_config(tmp_path / "ref", emu, {"svamp": mistakes})), cwd=ROOT, check=False
    )
    assert ref.returncode == 0, ref.stderr.decode()
    reference = (tmp_path / "ref" / "run" / "dataset.jsonl").read_bytes()
    emu.reset_stats()

    # Four samples at a time: the run lasts seconds after the 20th answer, so SIGTERM lands mid-teach.
    cfg = write_config(tmp_path / "term", emu, {"svamp": mistakes}, samples_in_flight=4)
    out_dir = tmp_path / "term" / "run"
    async with await anyio.open_process(_teach(cfg), cwd=ROOT) as proc:
        await until_answered(emu, 20)
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await proc.wait()
        assert proc.stderr is not None
        stderr = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert code == 143, stderr
    # Beside the progress lines (--no-progress logs each stage's start), the stop is one line.
    (line,) = [x for x in stderr.splitlines() if x.strip() and " INFO stages.progress: " not in x]
    assert line.startswith("terminated (SIGTERM)") and "rerun the same command to resume" in line
    statuses = _statuses(out_dir)
    # Answered calls were committed, calls in flight recorded as cancelled, reports written.
    assert statuses.get("completed", 0) > 0 and statuses.get("cancelled", 0) > 0
    assert (out_dir / "cost_report.json").exists() and (out_dir / "report.md").exists()
    answered_before = emu.stats().total.completed

    rerun = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
    stats = emu.stats().total
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert (out_dir / "dataset.jsonl").read_bytes() == reference
    # Only answers that were in flight at SIGTERM (answered, never recorded) may be bought again.
    assert stats.duplicates <= answered_before - statuses["completed"]
    assert _statuses(out_dir)["completed"] == stats.completed - stats.duplicates


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie waiting for init to reap it runs no more


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_emulator_process_dies_with_a_sigkilled_parent():
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from emulator import EmulatorSpec, start_emulator_process\n"
                "with start_emulator_process(EmulatorSpec()) as url:\n    print(url, flush=True); time.sleep(600)"
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().startswith("http://127.0.0.1:")
        children = [int(p) for p in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
        assert children
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5.0
    while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in children)
