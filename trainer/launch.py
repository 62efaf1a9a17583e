"""Start the trainer the way the config asks, so the user still types one command.

One process trains inside the caller (run.py); more than one start under
`torchrun` or the `deepspeed` launcher (which also reads a hostfile for multi-node
runs), each process running `python -m trainer.recipe --config CFG`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from core.children import die_with_parent, kill_group, stop_group
from core.config import Config
from core.errors import ConfigError
from core.graders import grader_folder

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a trainer process needs beyond the caller's own.

    `DS_ACCELERATOR=cpu` where there is no CUDA (DeepSpeed would otherwise guess and
    warn), and `TORCH_EXTENSIONS_DIR` in the shared cache, so DeepSpeedCPUAdam's
    just-in-time build (about 30 s) happens once per machine, not once per run.
    """
    import torch

    from student.models import cache_root

    env = dict(os.environ if base is None else base)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    return env


# How long a stopped worker may take to reach its step boundary and save a checkpoint
# before it is killed (a second Ctrl-C kills at once). The deepspeed launcher's own
# `launch.py` gives its workers 30 s and offers no setting.
WORKER_GRACE_S = 600.0
# Tells a trainer worker which process to outlive no longer (see `trainer.recipe.run_cli`).
RUN_PID_ENV = "COMMITTEE_RUN_PID"

Objective = Literal["sft", "dpo"]
_MODULES: dict[str, str] = {"sft": "trainer.recipe", "dpo": "trainer.dpo"}


def launch_command(
    config_path: Path, cfg: Config, port: int, objective: Objective = "sft", task: str | None = None
) -> list[str]:
    """The launcher command line for a multi-process run.

    Raises `ConfigError` for a hostfile without the deepspeed launcher.
    """
    train = cfg.train
    recipe = ["--config", str(config_path), *(["--task", task] if task else [])]
    if train.launcher == "torchrun":
        if train.hostfile:
            raise ConfigError("[train].hostfile needs launcher = 'deepspeed' (torchrun takes no hostfile)")
        # torchrun SIGKILLs workers still running `--shutdown-timeout` (default 30 s) after
        # it passed a stop on: too short for a step and a sharded checkpoint of a big model.
        return [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(train.num_processes),
            "--shutdown-timeout", str(int(WORKER_GRACE_S)),
            "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", _MODULES[objective], *recipe,
        ]  # fmt: skip
    hosts = ["--hostfile", train.hostfile] if train.hostfile else ["--num_gpus", str(train.num_processes)]
    return [
        sys.executable, "-m", "deepspeed.launcher.runner", *hosts, "--master_port", str(port),
        "--module", _MODULES[objective], *recipe,
    ]  # fmt: skip


def worker_pythonpath(cfg: Config, inherited: str | None) -> str:
    """PYTHONPATH for trainer workers: this copy's packages, then the folders of the config's `module:function`
    graders, then the caller's own. Workers start in this copy's folder and load the config again, importing
    its graders: one beside a notebook (its config written to out_dir) would be found nowhere else."""
    graders = {d.answer.grader for d in cfg.datasets if d.answer is not None and d.answer.grader is not None}
    folders = [str(folder) for spec in sorted(graders) if (folder := grader_folder(spec)) is not None]
    return os.pathsep.join(filter(None, [str(_REPO), *dict.fromkeys(folders), inherited]))


def launch(
    config_path: str | os.PathLike[str], cfg: Config, objective: Objective = "sft", task: str | None = None
) -> int:
    """Train as configured (`sft`: FAIR's joint loss; `dpo`: the DPO stage); returns the exit code (0 on success).

    `task`: train that benchmark's own student (`[train] per_dataset`; SFT only).

    With one process and no hostfile, trains in this process (errors propagate as
    `CommitteeError`s); otherwise runs the launcher and returns its exit code, the
    trainer's own one-line error having gone to its stderr.
    """
    config_path = Path(config_path).resolve()
    env = train_env()
    if cfg.train.num_processes == 1 and not cfg.train.hostfile:
        os.environ.update({k: v for k, v in env.items() if k not in os.environ})
        # A fresh rendezvous port for each training in this process (SFT then DPO, per-dataset
        # students): the store of an earlier one may still hold the port it was given.
        os.environ["MASTER_PORT"] = str(free_port())
        import torch.distributed as dist

        from trainer.dpo import train_dpo
        from trainer.recipe import stop_on_signals, train

        # Around the whole call, setup included: the event loop that would see SIGTERM is
        # blocked until this returns, and model loading or DeepSpeed's extension build can
        # take minutes. The trainer checks the list after setup and at each step boundary.
        with stop_on_signals() as stop:
            try:
                result = train_dpo(cfg, stop=stop) if objective == "dpo" else train(cfg, task=task, stop=stop)
            finally:
                if dist.is_initialized():
                    # DeepSpeed's teardown, not torch's: it also drops the groups DeepSpeed cached, which a
                    # second training in this process (per_dataset students, ablations) would find dead.
                    import deepspeed.comm

                    deepspeed.comm.destroy_process_group()
        # Stopped at a step boundary by a signal: the code a process that signal ended would give.
        stopped_by = getattr(result, "stopped_by", None)
        return 128 + signal.Signals[stopped_by] if stopped_by else 0
    command = launch_command(config_path, cfg, free_port(), objective, task)
    # The launcher gives each worker its own rank and port; stale ones from this process must not leak in.
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(key, None)
    env["PYTHONPATH"] = worker_pythonpath(cfg, env.get("PYTHONPATH"))
    # Workers watch this process themselves (`trainer.recipe.run_cli`): neither our process
    # group nor the kernel's parent-death signal reaches all of them if we are SIGKILLed.
    env[RUN_PID_ENV] = str(os.getpid())
    log.info("launching %d trainer processes: %s", cfg.train.num_processes, " ".join(command))
    # Its own process group, stopped whenever this function is left (Ctrl-C, SIGTERM, an
    # error), and a SIGTERM from the kernel if run.py dies outright: no worker outlives the run.
    # SIGTERM, not SIGKILL, so the launcher can stop its workers in turn.
    launcher = subprocess.Popen(
        command,
        cwd=_REPO,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    forwarded: list[int] = []
    try:
        with _forward_stops(launcher) as forwarded:
            code = launcher.wait()
    finally:
        # Longer than torchrun's own wait for its workers, so it is torchrun, which sees
        # them, that decides when they have had enough time.
        stop_group(launcher, timeout_s=WORKER_GRACE_S + 30.0, signalled=bool(forwarded))
    # The launcher's own code after its workers stopped on a signal says little: report the signal.
    return 128 + forwarded[0] if forwarded else code


@contextmanager
def _forward_stops(launcher: subprocess.Popen) -> Iterator[list[int]]:
    """Pass Ctrl-C and SIGTERM on to the trainer processes as SIGTERM, which stops them at a step boundary.

    They lead their own session, so a terminal's Ctrl-C does not reach them by itself.
    A second Ctrl-C SIGKILLs the launcher's group at once (torchrun's workers, in
    sessions of their own, then die with torchrun: see `run_cli`). Yields the signals received.
    """
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if received and signum == signal.SIGINT:
            log.warning("SIGINT again: killing the trainer processes now; rerun to resume from the last checkpoint")
            received.append(signum)
            kill_group(launcher)
            return
        received.append(signum)
        log.warning("%s: asking the trainer processes to stop at the end of this step", signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGTERM)

    with on_stop_signals(forward):
        yield received


# The handlers of blocks running off the main thread (a training started by the Python API beside a notebook's
# event loop), which no signal reaches: `stop_off_main_thread` calls them instead.
_OFF_MAIN: list[Callable[[int, object], None]] = []
_OFF_MAIN_LOCK = threading.Lock()


@contextmanager
def on_stop_signals(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Call `handler(signum, frame)` on Ctrl-C and SIGTERM within the block, then put the previous handlers back.

    Off the main thread, where handlers cannot be set, it sets none (signals keep their usual effect) and
    `stop_off_main_thread` calls `handler` instead.
    """
    if threading.current_thread() is not threading.main_thread():
        with _OFF_MAIN_LOCK:
            _OFF_MAIN.append(handler)
        try:
            yield
        finally:
            with _OFF_MAIN_LOCK:
                _OFF_MAIN.remove(handler)
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_off_main_thread(signum: int = signal.SIGINT) -> None:
    """Deliver `signum` to the `on_stop_signals` blocks running off the main thread, as the signal would on it:
    a training stops at its next step boundary (a second SIGINT: at once)."""
    with _OFF_MAIN_LOCK:
        handlers = list(_OFF_MAIN)
    for handler in handlers:
        handler(signum, None)
