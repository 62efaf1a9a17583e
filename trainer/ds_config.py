"""The DeepSpeed side of `[train]`: the JSON config, the optimizer and the LR schedule.

The config is generated from TrainSection, then a user-supplied DeepSpeed JSON
(`[train].deepspeed_config`) is merged over it key by key, so a user can reach any
DeepSpeed option without us mirroring it. Batch sizes stay ours: the data loader
is built from [train], so a JSON that disagrees is refused rather than obeyed halfway.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch

from core.config import TrainSection
from core.errors import ConfigError

Precision = Literal["bf16", "fp16", "fp32"]


def resolve_precision(setting: str, *, cuda: bool, bf16_supported: bool) -> Precision:
    """`auto` is bf16 on a CUDA GPU that has it, else fp32 (fp16 on CPU is refused: no loss scaling there)."""
    if setting == "auto":
        return "bf16" if cuda and bf16_supported else "fp32"
    if setting == "fp16" and not cuda:
        raise ConfigError("[train].precision = 'fp16' needs a CUDA GPU; use 'bf16' or 'fp32' on CPU")
    return setting  # type: ignore[return-value]


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_ds_config(train: TrainSection, precision: Precision, *, cuda: bool) -> dict:
    """The DeepSpeed config dict for `train`, with `train.deepspeed_config` (a JSON file) merged over it.

    Raises `ConfigError` for an unreadable override file or one whose batch sizes
    disagree with [train].
    """
    zero: dict = {"stage": train.zero_stage}
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
    if train.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cuda}
    if train.zero_stage == 3:
        # Without it ZeRO-3 has no full weights to write into model/ at the end.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # Our optimizer is torch AdamW, which DeepSpeed calls "untested" with ZeRO.
        "zero_allow_untested_optimizer": True,
        # We log ourselves, once per optimizer step, on rank 0.
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if train.deepspeed_config is None:
        return config
    path = Path(train.deepspeed_config)
    try:
        override = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"[train].deepspeed_config: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"[train].deepspeed_config: {path} is not valid JSON: {exc}") from None
    if not isinstance(override, dict):
        raise ConfigError(f"[train].deepspeed_config: {path} must hold a JSON object")
    merged = _merge(config, override)
    for ds_key, our_key in (
        ("train_micro_batch_size_per_gpu", "micro_batch_size"),
        ("gradient_accumulation_steps", "grad_accum"),
    ):
        if merged[ds_key] != config[ds_key]:
            raise ConfigError(
                f"{path}: {ds_key} = {merged[ds_key]} disagrees with [train].{our_key} = {config[ds_key]}; "
                f"set it in [train] only"
            )
    return merged


def build_optimizer(model: torch.nn.Module, train: TrainSection) -> torch.optim.Optimizer:
    """AdamW over the model's trainable parameters; DeepSpeedCPUAdam when ZeRO offloads them to CPU.

    Biases and norm weights (1-D tensors) get no weight decay, as usual for transformers.
    Raises `ConfigError` when offloading but DeepSpeedCPUAdam cannot be built.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": train.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # LoRA trains only matrices; DeepSpeed drops an empty group, which the scheduler would then miscount.
    groups = [g for g in groups if g["params"]]
    if not (train.offload_optimizer or train.offload_params):
        return torch.optim.AdamW(groups, lr=train.lr)
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=train.lr, adamw_mode=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"offload needs DeepSpeedCPUAdam, which could not be built ({first}); "
            f"install a C++ compiler and ninja, or set [train].offload_optimizer = false"
        ) from None


def warmup_steps(train: TrainSection, total_steps: int) -> int:
    """Optimizer steps of linear warmup: warmup_ratio of the run, rounded up."""
    return math.ceil(train.warmup_ratio * total_steps)


def lr_factor(step: int, warmup: int, total_steps: int, schedule: str) -> float:
    """The LR multiplier at optimizer `step`: linear warmup to 1, then `schedule` (constant, linear or cosine to 0)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSection, total_steps: int):
    """Linear warmup from 0 to lr over `warmup_steps`, then `train.lr_schedule` until `total_steps`."""
    warmup = warmup_steps(train, total_steps)

    def factor(step: int) -> float:
        return lr_factor(step, warmup, total_steps, train.lr_schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
