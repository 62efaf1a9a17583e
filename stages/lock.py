"""One run per run directory: an OS file lock on `out_dir/run.lock`, held for the whole run.

Two runs on one directory would each buy the calls the other has in flight, and
interleave their writes to dataset.jsonl and the model. `flock` is released by
the kernel when its holder exits in any way (SIGKILL included), so a stale lock
file never blocks a rerun; the file's text (pid and command) only names the holder.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import CommitteeError

LOCK_FILE = "run.lock"


class RunDirBusy(CommitteeError):
    """Another process holds the run directory."""


@contextmanager
def hold_run_dir(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir` for this process until the block exits.

    Raises `RunDirBusy` at once, naming the holder's pid and command, when another
    process holds it. The directory is created if needed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    # os.open's descriptors are not inherited by children, so a trainer or server
    # started by this run never keeps the lock alive after it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "pid unknown"
            raise RunDirBusy(
                f"{out_dir} is in use by another run ({holder}); wait for it to end or stop it, "
                "or set [run].out_dir to another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.orig_argv)}\n".encode(), 0)
        yield
    finally:
        # Closing the descriptor releases the lock; the file stays (removing it would
        # race with a run that has just opened it).
        os.close(fd)
