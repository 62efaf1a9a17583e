"""Stopping training and pilots: the whole launcher group gets its time, signals act during setup, Ctrl-C twice
kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

from core.children import die_with_parent, stop_group
from tests.test_dpo import dpo_config
from tests.test_trainer import config, write_run

ROOT = Path(__file__).resolve().parents[1]

# A leader that dies at once on SIGTERM (as deepspeed.launcher.runner does on one node)
# and a worker in its group that needs a while to save its checkpoint after SIGTERM.
_GROUP = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, '-c', '''
import pathlib, signal, sys, time
def save(*_):
    time.sleep(1.0)
    pathlib.Path(sys.argv[1]).write_text("saved")
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
print("ready", flush=True)
while True:
    time.sleep(1)
''', sys.argv[1]])
worker.wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups as on Linux")
def test_stop_group_waits_for_the_group_after_its_leader_dies(tmp_path: Path) -> None:
    marker = tmp_path / "checkpoint"
    leader = subprocess.Popen(
        [sys.executable, "-c", _GROUP, str(marker)], stdout=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=die_with_parent(),
    )  # fmt: skip
    assert leader.stdout is not None and leader.stdout.readline() == "ready\n"
    stop_group(leader, timeout_s=60.0)
    # Before: the leader's death was taken for the group's, and the worker was SIGKILLed mid-save.
    assert marker.read_text() == "saved"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups as on Linux")
def test_a_second_ctrl_c_kills_the_trainer_processes(tmp_path: Path) -> None:
    from trainer.launch import _forward_stops

    # A launcher that shrugs off SIGTERM: only a kill stops it.
    launcher = subprocess.Popen(
        [sys.executable, "-c", ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                "print('ready', flush=True)\nwhile True: time.sleep(1)")],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert launcher.stdout is not None and launcher.stdout.readline() == "ready\n"
        with _forward_stops(launcher) as received:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            code = launcher.wait(timeout=30)
    finally:
        stop_group(launcher, timeout_s=1.0)
    assert received == [signal.SIGINT, signal.SIGINT] and code == -signal.SIGKILL


def test_torchrun_waits_for_stopped_workers_less_long_than_launch_does(tmp_path: Path, tiny_model_dir: Path) -> None:
    from trainer.launch import WORKER_GRACE_S, launch_command

    cfg = config(tmp_path, tiny_model_dir, num_processes=2, launcher="torchrun")
    command = launch_command(Path("run.toml"), cfg, 29500)
    grace = float(command[command.index("--shutdown-timeout") + 1])
    assert 60 < grace <= WORKER_GRACE_S


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd (Linux 5.3+)")
def test_a_worker_is_told_to_stop_when_run_py_is_sigkilled() -> None:
    run = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    worker = subprocess.Popen(
        [sys.executable, "-c",
         ("import signal, sys\nfrom core.children import watch_run\n"
          "signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), sys.exit(0)))\n"
          f"watch_run({run.pid})\nprint('ready', flush=True)\nwhile True: signal.pause()")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        run.kill()
        run.wait()
        assert worker.stdout.readline() == "stopping\n"
        assert worker.wait(timeout=30) == 0
    finally:
        for p in (run, worker):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_sigterm_during_setup_stops_training_before_any_step(tmp_path: Path, tiny_model_dir: Path) -> None:
    from trainer.recipe import train

    cfg = config(tmp_path, tiny_model_dir, max_steps=40)
    # As if SIGTERM came while the model loaded: the caller's handler has recorded it.
    result = train(cfg, stop=[signal.SIGTERM])
    assert (result.stopped_by, result.steps, result.checkpoint_step) == ("SIGTERM", 0, None)
    assert not (cfg.out_dir / "train_log.jsonl").exists()
    assert not list((cfg.out_dir / "checkpoints").glob("step*")) and not (cfg.out_dir / "model").exists()


def test_launch_handles_signals_for_the_whole_in_process_call(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer import recipe
    from trainer.launch import launch

    path = write_run(tmp_path, tiny_model_dir)
    seen: list[list[int]] = []

    def setup_then_check(cfg, *, stop, task=None):
        # A SIGTERM while the model loads must be recorded, not end the process (or wait for the loop).
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(list(stop))
        return recipe.TrainResult(model_dir="m", stopped_early=True, stopped_by="SIGTERM")

    monkeypatch.setattr(recipe, "train", setup_then_check)
    # Tests that train in this process share one process group (DeepSpeed caches it): keep it.
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda *args, **kwargs: None)
    previous = signal.getsignal(signal.SIGTERM)
    from core.config import load_config

    assert launch(path, load_config(path)) == 128 + signal.SIGTERM
    assert seen == [[signal.SIGTERM]] and signal.getsignal(signal.SIGTERM) is previous


def test_dpo_stops_during_setup_and_at_a_step_boundary(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer import dpo

    cfg = dpo_config(tmp_path, tiny_model_dir, max_steps=20)
    early = dpo.train_dpo(cfg, stop=[signal.SIGINT])
    assert (early.stopped_by, early.steps) == ("SIGINT", 0)

    calls = 0
    real_loss = dpo.dpo_loss

    def loss_then_sigterm(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(dpo, "dpo_loss", loss_then_sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    stopped = dpo.train_dpo(cfg)  # no list passed: it handles the signal itself
    assert signal.getsignal(signal.SIGTERM) is previous
    assert stopped.stopped_by == "SIGTERM" and 1 <= stopped.steps < 20
    assert not (cfg.out_dir / "model_dpo").exists()


def test_sigterm_during_a_pilot_ends_it_like_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    import run
    from stages import forecast

    path = write_run(tmp_path, "unused")
    finished = []

    async def pilot_until_sigterm(ctx, n, *, calibrate_from=None):
        # Under the default action this would end pytest: fail instead.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await anyio.sleep_forever()
        finally:
            finished.append("cancelled")  # the store's writer commits what is queued here

    monkeypatch.setattr(forecast, "pilot_dry_run", pilot_until_sigterm)
    assert run.main(["--config", str(path), "--dry-run", "--pilot", "2"]) == 143
    assert finished == ["cancelled"]
