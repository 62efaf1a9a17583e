"""Crash safety: SIGKILL the teach stage at random moments, rerun until done.

The final dataset must equal an uninterrupted run's, and no answer the store had
recorded as completed may be bought again: every duplicate the emulator sees must
be a call that was answered but not yet recorded when the process died.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from emulator import EmulatorSpec, Latency, ModelLimits
from emulator.fair_script import FairScript
from tests.conftest import TEACHERS, authors_file, until_answered, write_config

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


def completed_rows(out_dir: Path) -> int:
    db = out_dir / "store.sqlite"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM calls WHERE status = 'completed'").fetchone()[0]
    except sqlite3.OperationalError:  # killed before the schema was committed
        return 0
    finally:
        conn.close()


async def run_teach(cfg: Path, kill_after_s: float | None) -> int | None:
    cmd = [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"]
    async with await anyio.open_process(cmd, cwd=ROOT, stdout=None, stderr=None) as proc:
        if kill_after_s is None:
            return await proc.wait()
        with anyio.move_on_after(kill_after_s):
            return await proc.wait()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        return None


async def test_sigkill_and_rerun_reaches_the_same_dataset(tmp_path, monkeypatch, bench_data, emulator):
    from tasks import load_split

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", str(bench_data / "svamp"), "train", limit=80)
    limits = {model: ModelLimits(rpm=1800) for _, _, model in TEACHERS}
    spec = EmulatorSpec(models=limits, latency=Latency(median_ms=40, sigma=0.5))
    rng = random.Random(7)
    emu = await emulator(spec, FairScript(qs))
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    ref_cfg = write_config(tmp_path / "ref", emu, {"svamp": authors_file(tmp_path / "m.json", "svamp", qs)})
    assert await run_teach(ref_cfg, None) == 0
    reference = (tmp_path / "ref" / "run" / "dataset.jsonl").read_bytes()

    emu.reset_stats()
    cfg = write_config(tmp_path / "killed", emu, {"svamp": tmp_path / "m.json"})
    out_dir = tmp_path / "killed" / "run"
    unrecorded = kills = 0
    for _ in range(8):
        code = await run_teach(cfg, rng.uniform(1.0, 4.0))
        if code is not None:
            assert code == 0
            break
        kills += 1
        # Answered by the provider but never recorded: the only calls a rerun may send again.
        unrecorded += emu.stats().total.completed - completed_rows(out_dir)
    else:
        assert await run_teach(cfg, None) == 0
    stats = emu.stats().total

    assert kills >= 1, "the run finished before the first kill; make it slower"
    assert (out_dir / "dataset.jsonl").read_bytes() == reference
    assert stats.duplicates <= unrecorded
    assert completed_rows(out_dir) == stats.completed - stats.duplicates


async def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, monkeypatch, bench_data, emulator):
    from tasks import load_split

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", str(bench_data / "svamp"), "train", limit=60)
    spec = EmulatorSpec(latency=Latency(median_ms=400, sigma=0.3))
    emu = await emulator(spec, FairScript(qs))
    # Four samples at a time: the run lasts seconds after the 20th answer, so Ctrl-C lands mid-teach.
    cfg = write_config(tmp_path, emu, {"svamp": authors_file(tmp_path / "m.json", "svamp", qs)}, samples_in_flight=4)
    cmd = [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"]
    async with await anyio.open_process(cmd, cwd=ROOT) as proc:
        # Wait until calls are under way, then press Ctrl-C.
        await until_answered(emu, 20)
        proc.send_signal(signal.SIGINT)
        # All of it, to the end: one receive() may get a part, or nothing if the pipe closes first.
        stderr = b"".join([chunk async for chunk in proc.stderr]).decode() if proc.stderr else ""
        code = await proc.wait()
    assert code == 130, stderr
    assert "rerun the same command to resume" in stderr
    conn = sqlite3.connect(tmp_path / "run" / "store.sqlite")
    statuses = dict(conn.execute("SELECT status, count(*) FROM calls GROUP BY status").fetchall())
    conn.close()
    # In-flight calls were cancelled and recorded as not done; answered ones were kept.
    assert statuses.get("cancelled", 0) > 0 and statuses.get("completed", 0) > 0
    answered_before = emu.stats().total.completed
    assert await run_teach(cfg, None) == 0
    stats = emu.stats().total
    # Only calls answered but never recorded (in flight at Ctrl-C) may have been sent again.
    assert stats.duplicates <= answered_before - statuses["completed"]
