"""Child processes that never outlive the run that started them, whatever signal ended it.

Two guards, because neither covers every case alone: on Linux the kernel sends the
child a signal when its parent dies (`PR_SET_PDEATHSIG`, which also covers a
SIGKILLed parent that runs no cleanup), and the child leads its own process group,
which the parent terminates on its way out (covering grandchildren that stay in that
group, such as the deepspeed launcher's workers, and systems without prctl).

Neither reaches a grandchild in a session of its own, such as torchrun's workers
(torch starts each with `start_new_session=True`), nor one whose parent died without
passing the signal on: the trainer's workers guard themselves (`watch_run`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
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


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux only; elsewhere nothing).

    For a process started by a launcher we do not control (torchrun puts its workers in
    sessions of their own, out of reach of our group signals). Call it from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def stop_group(child: subprocess.Popen, timeout_s: float = 5.0, *, signalled: bool = False) -> None:
    """SIGTERM the child's process group (it leads one); SIGKILL what is left of it after `timeout_s`.

    Waits for the whole group, not only the child: a leader may die at once on SIGTERM
    (the deepspeed launcher's runner has no handler on one node) while processes it left
    in the group still finish a checkpoint. `signalled`: the group already got its
    SIGTERM; a second one would cut torchrun's own graceful shutdown short (its handler
    raises again while it waits for its workers).
    """
    deadline = time.monotonic() + timeout_s
    if not signalled:
        _signal_group(child, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=timeout_s)
    # Processes that are not our children cannot be waited on: poll the group instead.
    while _group_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(child, signal.SIGKILL)
    child.wait()


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group now (a second Ctrl-C)."""
    _signal_group(child, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    if os.path.isdir("/proc"):
        # Zombies do not count: when run.py is PID 1 in a container, orphans are its own
        # to reap, and it never waits for them, so signal 0 would find them "alive" until
        # the deadline.
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
        return False
    # Elsewhere signal 0 checks without sending. A member we may not signal
    # (PermissionError) we could not kill either: waiting for it is no use.
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def watch_run(pid: int) -> None:
    """SIGTERM this process when process `pid` (run.py) ends, however it ends (Linux 5.3+, else nothing).

    For trainer workers, which the kernel's parent-death signal does not reach when
    run.py is SIGKILLed: the deepspeed runner dies at once on the SIGTERM it gets and
    leaves `deepspeed.launcher.launch` and the workers behind. SIGTERM, so the worker
    stops at a step boundary with a checkpoint, as after any other stop.
    """
    if not hasattr(os, "pidfd_open"):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)  # gone before we started watching
        return
    except OSError:  # a kernel without pidfd: the launcher's own signal is all there is
        return

    def wait_then_stop() -> None:
        # A pidfd turns readable when the process exits: no polling.
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_then_stop, name="watch-run", daemon=True).start()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)
