"""The DeepSpeed trainer on a tiny random Llama, on CPU: it learns, ZeRO stages agree, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.config import Config, load_config
from core.errors import ConfigError, DataError
from tests.test_trainer_data import make_records, write_jsonl
from trainer.ds_config import build_ds_config, resolve_precision
from trainer.recipe import train


def write_run(tmp_path: Path, model: Path | str, *, records: int = 8, name: str = "run", **train_keys) -> Path:
    """A run directory with train.jsonl and a config whose [train] takes `train_keys`; returns the config path."""
    out = tmp_path / name
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", make_records(records))
    keys = {"micro_batch_size": 2, "grad_accum": 2, "lr": 1e-3, "warmup_ratio": 0.0, **train_keys}
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path = out / "run.toml"
    path.write_text(
        f'[run]\nname = "t"\nout_dir = "{out}"\nseed = 7\n\n[[datasets]]\ntask = "svamp"\n\n'
        f'[student]\nmodel = "{model}"\n\n[train]\n' + "\n".join(lines) + "\n"
    )
    return path


def config(tmp_path: Path, model: Path | str, **keys) -> Config:
    return load_config(write_run(tmp_path, model, **keys))


def losses(cfg: Config) -> list[float]:
    return [json.loads(line)["loss"] for line in (cfg.out_dir / "train_log.jsonl").read_text().splitlines()]


def weights(model_dir: Path | str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(model_dir) / "model.safetensors")


def test_loss_goes_down_and_the_model_saves_as_a_plain_hf_directory(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=8, lr=3e-3)
    result = train(cfg)

    curve = losses(cfg)
    assert len(curve) == 8 and result.steps == 8
    assert curve[-1] < curve[0] - 0.5
    rows = [json.loads(line) for line in (cfg.out_dir / "train_log.jsonl").read_text().splitlines()]
    fields = {"step", "epoch", "loss", "loss_feedback", "loss_rationale", "lr", "grad_norm", "tokens_per_s"}
    assert fields <= rows[0].keys()
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert (cfg.out_dir / "train_loss.png").stat().st_size > 0

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    ids = tokenizer("Tom has 3 apples", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    trained, initial = weights(result.model_dir), weights(tiny_model_dir)
    assert trained.keys() == initial.keys()
    assert any(not torch.equal(trained[k], initial[k]) for k in trained)


def test_rerunning_a_finished_run_is_a_no_op(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=1)
    assert not train(cfg).skipped
    stamp = (cfg.out_dir / "model" / "model.safetensors").stat().st_mtime_ns
    assert train(cfg).skipped
    assert (cfg.out_dir / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    # Changed data means a new model.
    write_jsonl(cfg.out_dir / "train.jsonl", make_records(9))
    assert not train(cfg).skipped


@pytest.fixture(scope="module")
def stage0_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Config:
    """Three steps without ZeRO: the reference the ZeRO stages are compared with."""
    cfg = config(tmp_path_factory.mktemp("stage0"), tiny_model_dir, max_steps=3, zero_stage=0)
    train(cfg)
    return cfg


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stages_give_the_loss_of_stage_0(
    tmp_path: Path, tiny_model_dir: Path, stage0_run: Config, stage: int
) -> None:
    other = config(tmp_path, tiny_model_dir, max_steps=3, zero_stage=stage)
    train(other)
    assert losses(other) == pytest.approx(losses(stage0_run), rel=1e-4)
    a, b = weights(stage0_run.out_dir / "model"), weights(other.out_dir / "model")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_offloaded_optimizer_trains_like_stage_0(tmp_path: Path, tiny_model_dir: Path, stage0_run: Config) -> None:
    """ZeRO-2 with DeepSpeedCPUAdam (built just in time the first time: a minute or more here)."""
    other = config(tmp_path, tiny_model_dir, max_steps=3, zero_stage=2, offload_optimizer=True)
    train(other)
    assert losses(other) == pytest.approx(losses(stage0_run), rel=1e-3)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    # 8 records, micro-batch 2, grad-accum 2: 2 steps an epoch; 5 steps end mid-epoch 3.
    keys = {"max_steps": 5, "save_every_steps": 2, "records": 8}
    whole = config(tmp_path, tiny_model_dir, name="whole", **keys)
    train(whole)

    killed = config(tmp_path, tiny_model_dir, name="killed", **keys)
    # Killed after step 3: the newest checkpoint is step 2's, so step 3 is redone.
    first = train(killed, stop_after_steps=3)
    assert first.stopped_early and not (killed.out_dir / "model").exists()
    assert len(losses(killed)) == 3
    second = train(killed)
    assert second.resumed_from_step == 2 and second.steps == 3

    assert losses(killed) == pytest.approx(losses(whole), rel=1e-5)
    a, b = weights(whole.out_dir / "model"), weights(killed.out_dir / "model")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    assert [p.name for p in (killed.out_dir / "checkpoints").glob("step*")] == ["step00000004"]


def test_checkpoints_from_other_inputs_are_not_resumed(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=4, save_every_steps=1)
    train(cfg, stop_after_steps=2)
    write_jsonl(cfg.out_dir / "train.jsonl", make_records(10))
    assert train(cfg).resumed_from_step == 0


@pytest.mark.parametrize(("launcher", "stage"), [("torchrun", 2), pytest.param("deepspeed", 3, marks=pytest.mark.slow)])
def test_two_cpu_processes_train_and_save_one_model(
    tmp_path: Path, tiny_model_dir: Path, launcher: str, stage: int
) -> None:
    from trainer.launch import launch

    path = write_run(tmp_path, tiny_model_dir, max_steps=2, num_processes=2, zero_stage=stage, launcher=launcher)
    cfg = load_config(path)
    assert launch(path, cfg) == 0
    rows = [json.loads(line) for line in (cfg.out_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # rank 0 alone writes the log
    # 8 samples / (micro-batch 2 x 2 ranks x grad-accum 2) = 1 step per epoch: the data is sharded.
    assert rows[1]["epoch"] == pytest.approx(2.0)
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(cfg.out_dir / "model")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.equal(trained.lm_head.weight, initial.lm_head.weight)


# --- bad input: one line, before training ---------------------------------------------


def test_a_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        train(config(tmp_path, tmp_path / "no-such-model"))


def test_a_zero_stage_outside_0_to_3_is_refused_at_load(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="zero_stage"):
        config(tmp_path, tiny_model_dir, zero_stage=4)


def test_a_missing_train_jsonl_says_which_stage_to_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir)
    (cfg.out_dir / "train.jsonl").unlink()
    with pytest.raises(DataError, match=r"train\.jsonl: no training data; run the dataset stage"):
        train(cfg)


def test_max_length_shorter_than_every_prompt_fails_before_the_model_loads(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.recipe

    monkeypatch.setattr(trainer.recipe, "setup_model", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ConfigError, match="max_length = 16 is shorter than every prompt"):
        train(config(tmp_path, tiny_model_dir, max_length=16))


def test_out_of_memory_names_the_settings_to_lower(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.recipe

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.recipe, "fair_loss", oom)
    expected = r"out of memory at step 1 \(micro_batch_size=2.*lower \[train\]\.micro_batch_size"
    with pytest.raises(ConfigError, match=expected):
        train(config(tmp_path, tiny_model_dir, max_steps=1))


def test_offload_without_a_buildable_cpu_adam_is_one_line(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepspeed.ops.adam

    class Unbuildable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error building extension 'cpu_adam'\nninja: build stopped")

    monkeypatch.setattr(deepspeed.ops.adam, "DeepSpeedCPUAdam", Unbuildable)
    expected = r"^offload needs DeepSpeedCPUAdam, which could not be built \(Error building"
    with pytest.raises(ConfigError, match=expected) as info:
        train(config(tmp_path, tiny_model_dir, max_steps=1, zero_stage=2, offload_optimizer=True))
    assert "\n" not in str(info.value)


def test_flash_attention_and_fp16_need_cuda(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="flash_attention_2' needs CUDA"):
        train(config(tmp_path, tiny_model_dir, name="fa", attn_implementation="flash_attention_2"))
    with pytest.raises(ConfigError, match="fp16' needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False, bf16_supported=False)
    assert resolve_precision("auto", cuda=False, bf16_supported=False) == "fp32"
    assert resolve_precision("auto", cuda=True, bf16_supported=True) == "bf16"


# --- the generated DeepSpeed config ---------------------------------------------------


def test_ds_config_follows_train_and_a_user_json_overrides_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, zero_stage=3, offload_optimizer=True, offload_params=True, max_grad_norm=0.3)
    ds = build_ds_config(cfg.train, "bf16", cuda=False)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 0.3

    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}, "gradient_clipping": 1.0}))
    cfg.train.deepspeed_config = str(user)
    merged = build_ds_config(cfg.train, "bf16", cuda=False)
    assert merged["gradient_clipping"] == 1.0
    assert merged["zero_optimization"]["reduce_bucket_size"] == 1000
    assert merged["zero_optimization"]["stage"] == 3  # untouched keys survive the merge

    user.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16}))
    expected = r"train_micro_batch_size_per_gpu = 16 disagrees with \[train\]\.micro_batch_size = 2"
    with pytest.raises(ConfigError, match=expected):
        build_ds_config(cfg.train, "bf16", cuda=False)


def test_sigterm_stops_training_at_a_step_boundary_with_a_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from trainer import recipe

    cfg = config(tmp_path, tiny_model_dir, max_steps=40, records=8)
    calls = 0
    real_loss = recipe.fair_loss

    def loss_then_sigterm(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 5:  # the first micro-batch of step 3 (grad_accum 2)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(recipe, "fair_loss", loss_then_sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    stopped = train(cfg)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert (stopped.stopped_by, stopped.checkpoint_step, stopped.steps) == ("SIGTERM", 3, 3)
    assert [p.name for p in (cfg.out_dir / "checkpoints").glob("step*")] == ["step00000003"]
    assert not (cfg.out_dir / "model").exists()
    monkeypatch.setattr(recipe, "fair_loss", real_loss)
    resumed = train(cfg, stop_after_steps=4)
    assert resumed.resumed_from_step == 3


@pytest.mark.parametrize(
    # The deepspeed runner dies at once on SIGTERM, leaving its workers saving in its process group.
    "launcher",
    ["torchrun", pytest.param("deepspeed", marks=pytest.mark.slow)],
)
def test_sigterm_stops_launched_workers_at_a_step_boundary(tmp_path: Path, tiny_model_dir: Path, launcher: str) -> None:
    import os
    import signal
    import threading

    from trainer.launch import launch

    # 64 records / (micro-batch 2 x 2 ranks x grad-accum 2): 8 steps an epoch, and a checkpoint only at its end.
    path = write_run(
        tmp_path, tiny_model_dir, records=64, max_steps=200, num_processes=2, zero_stage=2, launcher=launcher
    )
    cfg = load_config(path)
    log_path = cfg.out_dir / "train_log.jsonl"
    done = threading.Event()

    def sigterm_after_first_step() -> None:
        # The workers are other processes: their log file is the only sign of progress to wait on.
        while not done.wait(0.05):
            if log_path.is_file() and log_path.read_text().strip():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=sigterm_after_first_step)
    watcher.start()
    try:
        code = launch(path, cfg)
    finally:
        done.set()
        watcher.join()
    assert code == 128 + signal.SIGTERM
    steps = [json.loads(line)["step"] for line in log_path.read_text().splitlines()]
    assert 1 <= len(steps) < 8 and not (cfg.out_dir / "model").exists()
    # Both ranks stopped at the same boundary and saved the checkpoint to resume from.
    assert [p.name for p in (cfg.out_dir / "checkpoints").glob("step*")] == [f"step{steps[-1]:08d}"]
