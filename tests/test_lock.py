"""One run per run directory: a second run.py is refused at once, naming the holder; a dead holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator import EmulatorSpec
from emulator.fair_script import FairScript
from stages.lock import RunDirBusy, hold_run_dir
from tasks import load_split
from tests.conftest import authors_file, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.anyio
async def test_a_second_run_on_a_busy_run_directory_is_refused_at_once(tmp_path, emulator, monkeypatch):
    import anyio

    import run

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train", limit=5)
    emu = await emulator(EmulatorSpec(), FairScript(qs))
    cfg = write_config(tmp_path, emu, {"svamp": authors_file(tmp_path / "m.json", "svamp", qs)})
    with hold_run_dir(tmp_path / "run"):
        started = time.monotonic()
        proc = await anyio.run_process(
            [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"],
            cwd=ROOT,
            check=False,
        )
        elapsed = time.monotonic() - started
        # A dry run sends nothing and only reads the store: it needs no lock.
        assert run.main(["--config", str(cfg), "--dry-run"]) == 0
    requests = emu.stats().total.completed
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert elapsed < 5.0
    (line,) = [x for x in stderr.splitlines() if x.strip()]
    assert f"pid {os.getpid()}" in line and "in use by another run" in line
    assert requests == 0 and not (tmp_path / "run" / "store.sqlite").exists()


def test_the_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from pathlib import Path; from stages.lock import hold_run_dir\n"
                f"with hold_run_dir(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(600)"
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"), hold_run_dir(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL ran no cleanup, and the stale lock file is still there: the kernel released the lock.
    assert (tmp_path / "run.lock").exists()
    with hold_run_dir(tmp_path):
        pass
