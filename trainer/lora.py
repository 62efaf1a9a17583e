"""LoRA and QLoRA for the trainer, via PEFT: the base stays frozen, only small adapters train.

`[train.lora]` wraps the loaded model in PEFT adapters before DeepSpeed sees it
(DeepSpeed then optimizes only the parameters that require gradients);
`quantization = "4bit"` loads the frozen base in NF4 first (QLoRA, Dettmers et al.
2023), which needs CUDA and bitsandbytes. Every refusal here is one line, raised
before any weights load.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.config import LoraSection, TrainSection
from core.errors import ConfigError

if TYPE_CHECKING:
    from peft import PeftModel

log = logging.getLogger(__name__)


def check_lora_setup(train: TrainSection) -> None:
    """Everything about `[train.lora]` and `quantization` that can fail without loading a model."""
    check_peft(train)
    check_quantization(train, torch.cuda.is_available())


def check_quantization(train: TrainSection, cuda: bool) -> None:
    """Refuse `quantization = "4bit"` where it cannot run; `ConfigError` saying what is missing."""
    if train.quantization != "4bit":
        return
    if not cuda:
        raise ConfigError(
            "[train].quantization = '4bit' needs a CUDA GPU (bitsandbytes' 4-bit kernels); "
            "on CPU remove it and keep [train.lora]"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("[train].quantization = '4bit' needs bitsandbytes: pip install bitsandbytes")


def check_peft(train: TrainSection) -> None:
    """`ConfigError` when `[train.lora]` is set but PEFT is not installed."""
    if train.lora is not None and importlib.util.find_spec("peft") is None:
        raise ConfigError("[train.lora] needs peft: pip install -e '.[train]' (or pip install peft)")


def quantization_config(train: TrainSection):
    """The transformers `BitsAndBytesConfig` for QLoRA, or None for full-precision weights."""
    if train.quantization != "4bit":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def linear_names(model: torch.nn.Module) -> list[str]:
    """The leaf names of the model's linear layers (what `target_modules` may name), sorted."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    # bitsandbytes' Linear4bit subclasses torch's Linear, so quantized models list the same names.
    return sorted(names)


def apply_lora(model: torch.nn.Module, lora: LoraSection, model_name: str) -> PeftModel:
    """Wrap `model` in LoRA adapters on `lora.target_modules`; only they require gradients.

    Raises `ConfigError` naming the model's linear layers when a target matches none.
    """
    from peft import LoraConfig, get_peft_model

    available = linear_names(model)
    unknown = [t for t in lora.target_modules if t not in available]
    if unknown:
        raise ConfigError(
            f"[train.lora].target_modules: {', '.join(unknown)} match no linear layer of {model_name}; "
            f"its linear layers are: {', '.join(available)}"
        )
    config = LoraConfig(
        r=lora.r,
        # peft annotates lora_alpha as int, but only ever divides it by r: our float alpha is fine.
        lora_alpha=lora.alpha,  # pyright: ignore[reportArgumentType]
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    wrapped = get_peft_model(model, config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    log.info("LoRA ready: r=%d on %s, %.2fM of %.1fM parameters train", lora.r, ",".join(lora.target_modules),
             trainable / 1e6, total / 1e6)  # fmt: skip
    return wrapped


def save_lora(model: PeftModel, out: Path, *, merge: bool, state_dict: dict | None = None) -> None:
    """Save a LoRA-wrapped model: the adapter in `out`, or (merging) full weights in `out` and the adapter below.

    Merging folds the adapters into the base weights in place, so call it last.
    """
    if not merge:
        model.save_pretrained(str(out), state_dict=state_dict)
        return
    model.save_pretrained(str(out / "adapter"), state_dict=state_dict)
    merged = model.merge_and_unload()
    merged.save_pretrained(out)
