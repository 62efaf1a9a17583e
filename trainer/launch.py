"""Start the trainer the way the config asks, so the user still types one command.

One process trains inside the caller (run.py); more than one start under
`torchrun` or the `deepspeed` launcher (which also reads a hostfile for multi-node
runs), each process running `python -m trainer.recipe --config CFG`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Literal

from engine.config import Config
from engine.errors import ConfigError

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
        return [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(train.num_processes),
            "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", _MODULES[objective], *recipe,
        ]  # fmt: skip
    hosts = ["--hostfile", train.hostfile] if train.hostfile else ["--num_gpus", str(train.num_processes)]
    return [
        sys.executable, "-m", "deepspeed.launcher.runner", *hosts, "--master_port", str(port),
        "--module", _MODULES[objective], *recipe,
    ]  # fmt: skip


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
        import torch.distributed as dist

        from trainer.dpo import train_dpo
        from trainer.recipe import train

        try:
            if objective == "dpo":
                train_dpo(cfg)
            else:
                train(cfg, task=task)
        finally:
            if dist.is_initialized():
                # DeepSpeed's teardown, not torch's: it also drops the groups DeepSpeed cached, which a
                # second training in this process (per_dataset students, ablations) would find dead.
                import deepspeed.comm

                deepspeed.comm.destroy_process_group()
        return 0
    command = launch_command(config_path, cfg, free_port(), objective, task)
    # The launcher gives each worker its own rank and port; stale ones from this process must not leak in.
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    log.info("launching %d trainer processes: %s", cfg.train.num_processes, " ".join(command))
    return subprocess.run(command, cwd=_REPO, env=env, check=False).returncode
