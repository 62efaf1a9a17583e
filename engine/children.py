"""Child processes that never outlive the run that started them, whatever signal ended it.

Two guards, because neither covers every case alone: on Linux the kernel sends the
child a signal when its parent dies (`PR_SET_PDEATHSIG`, which also covers a
SIGKILLed parent that runs no cleanup), and the child leads its own process group,
which the parent terminates on its way out (covering the child's own children,
such as torchrun's workers, and systems without prctl).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send `sig` to the child when this process dies (Linux only).

    Use with `subprocess.Popen(..., preexec_fn=die_with_parent(), start_new_session=True)`.
    The signal follows the thread that forked, so start children from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    # Looked up before the fork: after it, in a threaded parent, only async-signal-safe
    # work is safe, and a plain C call is; loading a library is not.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def stop_group(child: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM the child's process group (it leads one), then SIGKILL it if the child is not gone in `timeout_s`."""
    _signal_group(child, signal.SIGTERM)
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)
        child.wait()
    else:
        # The leader is gone; anything it left in its group goes too.
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
