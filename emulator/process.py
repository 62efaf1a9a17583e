"""The emulator in a child process, so a client under test does not share its CPU core."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from core.children import die_with_parent, stop_group
from emulator.spec import EmulatorSpec

READY_PREFIX = "emulator listening on "
# The folder holding the emulator package: a checkout's root, or site-packages once installed.
_REPO_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def start_emulator_process(spec: EmulatorSpec, *, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Run `python -m emulator --spec ... --port 0` and yield its URL; kill it on exit.

    The child dies with this process too, even when this one is SIGKILLed. Read its
    counters with `GET {url}/_emulator/stats`. Raises RuntimeError with the child's
    stderr if it does not come up.
    """
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_bytes(msgspec.json.encode(spec))
        stderr_path = Path(tmp) / "stderr.txt"
        env = dict(os.environ)
        # Importable from a source checkout as well as from an installed package.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        with stderr_path.open("wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "emulator", "--spec", str(spec_path), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
                preexec_fn=die_with_parent(),
                start_new_session=True,
            )
        try:
            url = _read_url(child, stderr_path, start_timeout_s)
            yield url
        finally:
            stop_process(child)
            if child.stdout is not None:
                child.stdout.close()


def stop_process(child: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Ask a child server started in its own session to stop (SIGTERM), and kill it if it has not within `timeout_s`."""
    stop_group(child, timeout_s)


def _read_url(child: subprocess.Popen[str], stderr_path: Path, timeout_s: float) -> str:
    assert child.stdout is not None
    # readline blocks; a watchdog kills a child that neither prints nor dies in time.
    watchdog = threading.Timer(timeout_s, child.kill)
    watchdog.start()
    try:
        line = child.stdout.readline()
    finally:
        watchdog.cancel()
    if not line.startswith(READY_PREFIX):
        child.wait()
        error = stderr_path.read_text(errors="replace").strip().splitlines()
        raise RuntimeError(f"emulator process did not start: {error[-1] if error else line.strip() or 'no output'}")
    return line[len(READY_PREFIX) :].strip()
