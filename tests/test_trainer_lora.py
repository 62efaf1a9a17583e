"""LoRA in the DeepSpeed loop: only adapters train, the adapter (or the merged model) saves and reloads, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.config import Config, load_config
from core.errors import ConfigError
from student.models import is_adapter_dir, load_causal_lm
from tests.test_trainer import losses, weights, write_run
from trainer.recipe import train

pytest.importorskip("peft")


def config(tmp_path: Path, model: Path, *, lora: dict | None = None, **train_keys) -> Config:
    """test_trainer's run, with a `[train.lora]` table when `lora` is given."""
    path = write_run(tmp_path, model, **train_keys)
    if lora is not None:
        rows = "".join(f"{k} = {json.dumps(v)}\n" for k, v in lora.items())
        path.write_text(path.read_text() + "\n[train.lora]\n" + rows)
    return load_config(path)


def _generate(model_dir: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    model = load_causal_lm(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer("Tom has 3 apples", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return out


def test_lora_trains_the_adapters_and_saves_them_alone(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=6, lr=1e-2, lora={"r": 8, "alpha": 16, "dropout": 0.0})
    result = train(cfg)

    curve = losses(cfg)
    assert curve[-1] < curve[0]
    model_dir = Path(result.model_dir)
    assert is_adapter_dir(model_dir)
    from safetensors.torch import load_file

    adapter = load_file(model_dir / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    _generate(model_dir)

    # The eval stage's hf backend takes the adapter directory as a model.
    import anyio

    from core.config import StudentSection
    from student import make_backend

    backend = make_backend(StudentSection(backend="hf", greedy=True, max_new_tokens=4), model_path=model_dir)

    async def answers() -> list[str]:
        try:
            return [text async for _, text in backend.generate(["Tom has 3 apples"])]
        finally:
            await backend.close()

    assert len(anyio.run(answers)) == 1


def test_lora_merge_saves_full_weights_beside_the_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=2, lr=1e-2, lora={"r": 4, "merge": True})
    model_dir = Path(train(cfg).model_dir)

    assert not is_adapter_dir(model_dir) and is_adapter_dir(model_dir / "adapter")
    merged, base = weights(model_dir), weights(tiny_model_dir)
    assert merged.keys() == base.keys()
    changed = {k for k in merged if not torch.equal(merged[k], base[k])}
    assert changed and all("proj" in k for k in changed)
    # The merged model and base + adapter answer alike.
    torch.testing.assert_close(_generate(model_dir), _generate(model_dir / "adapter"))


def test_a_target_module_that_matches_nothing_names_the_models_layers(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, max_steps=1, lora={"target_modules": ["q_proj", "qkv"]})
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert "[train.lora].target_modules: qkv" in message and "q_proj" in message.split("are:")[1]
    assert "\n" not in message


def test_4bit_is_refused_on_cpu_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = config(tmp_path, tiny_model_dir, max_steps=1, lora={"r": 4}, quantization="4bit")
    with pytest.raises(ConfigError, match=r"^\[train\]\.quantization = '4bit' needs a CUDA GPU"):
        train(cfg)
    assert not (cfg.out_dir / "checkpoints").exists()


def test_4bit_without_lora_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"quantization.*needs `\[train.lora\]`"):
        config(tmp_path, tiny_model_dir, quantization="4bit")


def test_4bit_without_bitsandbytes_is_refused_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    import importlib.util

    from trainer.lora import check_quantization

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    cfg = config(tmp_path, tiny_model_dir, lora={"r": 4}, quantization="4bit")
    with pytest.raises(ConfigError, match=r"^\[train\]\.quantization = '4bit' needs bitsandbytes: pip install"):
        check_quantization(cfg.train, cuda=True)
