"""The student trainer: FAIR's joint loss under DeepSpeed ZeRO, read top to bottom.

    python -m trainer.recipe --config run.toml     # one process (trainer.launch sets up the env)
    torchrun --nproc_per_node 2 -m trainer.recipe --config run.toml

Inputs: `out_dir/train.jsonl` and `[student].model`; settings from `[train]`.
Outputs under `out_dir`: `checkpoints/` (DeepSpeed, resumable), `model/` (an ordinary
Hugging Face directory the eval stage and vLLM load), `train_log.jsonl`, `train_loss.png`.

Setup order matters: distributed first (DeepSpeed wants it before any engine),
tokenizer before data (prompts are rendered with it), data before the model (a bad
train.jsonl or max_length fails in seconds, not after loading weights), model
before the engine. Every rank runs the same code; only rank 0 logs and writes files,
but checkpoint saving and ZeRO-3 weight gathering are collectives all ranks join.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import msgspec
import torch
import torch.distributed as dist

from core.children import set_parent_death_signal, watch_run
from core.config import Config, LoraSection, TrainSection, effective_batch_warning, load_config
from core.errors import CommitteeError, ConfigError, DataError
from core.timings import Laps
from prompts.sets import PromptSet, prompt_set
from prompts.student import PromptFormat, resolve_format
from student.models import load_causal_lm
from tasks.definitions import declare
from trainer.data import (
    Pair,
    TruncationStats,
    collate,
    load_records,
    padding_fraction,
    plan_epoch,
    rank_batches,
    tokenize_pairs,
)
from trainer.ds_config import Precision, build_ds_config, build_optimizer, build_scheduler, resolve_precision
from trainer.experiment_log import ExperimentLog, check_loggers
from trainer.launch import RUN_PID_ENV, Objective, on_stop_signals
from trainer.lora import apply_lora, check_lora_setup, quantization_config, save_lora
from trainer.loss import LossParts, fair_loss
from trainer.step_log import R, StepRow, TrainStepRow, encode_row, read_step_log

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "committee_train.json"


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """`committee_train.json` in a saved model directory: the fingerprint of the inputs that made it
    (a rerun with the same inputs skips training), its steps, last loss (None: not a number) and start."""

    fingerprint: str
    steps: int
    final_loss: float | None
    source: str
    # Models saved before the dpo stage existed are SFT models.
    objective: Objective = "sft"


class LoopState(msgspec.Struct, kw_only=True):
    """Where the loop is; saved in every checkpoint's client state."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


class TrainResult(msgspec.Struct, kw_only=True):
    """What a call to `train` did. `skipped`: the model of these exact inputs already existed."""

    model_dir: str
    steps: int = 0
    resumed_from_step: int = 0
    skipped: bool = False
    stopped_early: bool = False
    # "SIGINT" or "SIGTERM" when a signal stopped the loop at a step boundary; the
    # checkpoint saved there (its step) to resume from.
    stopped_by: str = ""
    checkpoint_step: int | None = None
    final_loss: float | None = None
    padding_fraction: float = 0.0
    prompts_truncated: int = 0
    responses_truncated: int = 0


class _Dist(msgspec.Struct, frozen=True):
    rank: int
    local_rank: int
    world_size: int
    cuda: bool


# --- setup: one component each -------------------------------------------------------


def setup_distributed() -> _Dist:
    """Join (or, alone, create) the process group: NCCL on CUDA, gloo on CPU.

    A single process started by hand gets the one-process environment DeepSpeed
    insists on; torchrun and the deepspeed launcher set these themselves.
    """
    from trainer.launch import free_port, train_env

    # Before DeepSpeed's first import: it picks its accelerator then.
    for key, value in train_env().items():
        os.environ.setdefault(key, value)
    import deepspeed

    cuda = torch.cuda.is_available()
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(free_port())
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    if not cuda:
        skip_shm_comm_build()
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    return _Dist(dist.get_rank(), local_rank, dist.get_world_size(), cuda)


def skip_shm_comm_build() -> None:
    """Keep DeepSpeed from compiling its shared-memory collectives op, which training never calls.

    On the CPU accelerator DeepSpeed's comm backend JIT-builds `deepspeed_shm_comm`
    whenever its op list calls it compatible (about 2 minutes on 2 cores, ops are
    built just in time: https://deepspeed.ai/tutorials/advanced-install); its only
    user is `inference_all_reduce`, DeepSpeed inference's tensor-parallel all-reduce
    (`deepspeed/comm/torch.py`, `TorchBackend.__init__` and `build_shm_op`). Training
    all-reduces go through torch.distributed's gloo either way. Marking the op
    incompatible in DeepSpeed's op list is what `build_shm_op` reads.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    builder = accelerator.create_op_builder("ShareMemCommBuilder") if accelerator is not None else None
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


def resolve_model_dir(spec: str) -> Path:
    """`[student].model` as a local model directory; `ConfigError` when there is none."""
    from student.models import resolve_model

    return Path(resolve_model(spec))


def setup_tokenizer(
    model_dir: Path, prompt_format: Literal["auto", "chat", "instruction"]
) -> tuple[PreTrainedTokenizerBase, PromptFormat]:
    """The model's tokenizer (padding with eos when it has no pad token) and the resolved prompt format."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        # Padding is masked out of attention and loss, so any id will do.
        tokenizer.pad_token = tokenizer.eos_token
    try:
        fmt = resolve_format(prompt_format, tokenizer)
    except ValueError as exc:
        raise ConfigError(f"[student] {exc}") from None
    log.info("tokenizer ready: %s, prompt format %s", model_dir, fmt)
    return tokenizer, fmt


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id batches are padded with (`setup_tokenizer` gives every tokenizer one)."""
    pad_id = tokenizer.pad_token_id
    # transformers serves special-token ids through an untyped __getattr__; a pad token is one id.
    if not isinstance(pad_id, int):
        raise TypeError(f"tokenizer pad_token_id should be one int, got {pad_id!r}")
    return pad_id


def _setup_data(
    train_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    train: TrainSection,
    prompts: PromptSet,
    task: str | None = None,
) -> tuple[list[Pair], TruncationStats]:
    records = [r for r in load_records(train_path) if task is None or r.task == task]
    if not records:
        raise DataError(f"{train_path}: no training records of {task}; nothing to train its student on")
    pairs, truncated = tokenize_pairs(records, tokenizer, fmt, train.max_length, prompts, train.truncation_side)
    log.info(
        "data ready: %d samples from %s; truncated to max_length %d: %d prompts, %d responses",
        len(pairs),
        train_path,
        train.max_length,
        truncated.prompts,
        truncated.responses,
    )
    return pairs, truncated


def _attn_implementation(setting: str, cuda: bool, precision: Precision) -> str:
    # flash-attn kernels exist for 16-bit inputs on CUDA only.
    usable = cuda and precision != "fp32" and importlib.util.find_spec("flash_attn") is not None
    if setting == "auto":
        return "flash_attention_2" if usable else "sdpa"
    if setting == "flash_attention_2" and not usable:
        raise ConfigError(
            "[train].attn_implementation = 'flash_attention_2' needs CUDA, bf16 or fp16, and the flash-attn "
            "package; use 'sdpa'"
        )
    return setting


def setup_model(model_dir: Path, train: TrainSection, cuda: bool, precision: Precision) -> torch.nn.Module:
    """The model to train, in fp32 (or 4-bit), with LoRA adapters when `[train.lora]` asks."""
    attn = _attn_implementation(train.attn_implementation, cuda, precision)
    quantized = quantization_config(train)
    # Loaded in fp32 whatever the precision: DeepSpeed casts the weights itself and
    # keeps fp32 master copies for bf16/fp16, which would be rounded if loaded low.
    # A 4-bit base is the exception: bitsandbytes owns those weights.
    model = load_causal_lm(
        model_dir, dtype=torch.bfloat16 if quantized else torch.float32, attn_implementation=attn,
        **({"quantization_config": quantized} if quantized else {}),
    )  # fmt: skip
    if quantized is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train.gradient_checkpointing)
    if train.lora is not None:
        model = apply_lora(model, train.lora, model_dir.name)
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model ready: %s, %.1fM parameters, attention %s", model_dir.name, n_params / 1e6, attn)
    return model


def setup_engine(model: torch.nn.Module, train: TrainSection, ds_config: dict, total_steps: int):
    """The DeepSpeed engine: our AdamW and warmup/decay schedule unless the DeepSpeed JSON names its own."""
    import deepspeed

    # A user DeepSpeed JSON that names its own optimizer or scheduler gets DeepSpeed's;
    # DeepSpeed refuses both a client one and a configured one.
    optimizer = None if "optimizer" in ds_config else build_optimizer(model, train)
    scheduler = None
    if "scheduler" not in ds_config and optimizer is not None:
        scheduler = build_scheduler(optimizer, train, total_steps)
    # DeepSpeed's annotations lag its code: it takes any LRScheduler (it names the pre-2.0 private _LRScheduler) and,
    # as its docs say, an iterable of parameters (it annotates a Module).
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,  # pyright: ignore[reportArgumentType]
        model_parameters=None if optimizer is not None else model.parameters(),  # pyright: ignore[reportArgumentType]
        config=ds_config,
    )
    log.info("engine ready: ZeRO stage %d, %d optimizer steps", train.zero_stage, total_steps)
    return engine


class RunSetup(msgspec.Struct, frozen=True):
    """What `setup_run` builds: the process group, precision, DeepSpeed config and tokenizer."""

    ctx: _Dist
    precision: Precision
    ds_config: dict
    tokenizer: PreTrainedTokenizerBase
    fmt: PromptFormat


def setup_run(cfg: Config, settings: TrainSection, model_dir: Path) -> RunSetup:
    """The setup both trainers (SFT and DPO) run before their data, with `settings` as their `[train]`.

    Checks LoRA and the experiment loggers first (a bad setting fails before any heavy work),
    then joins the process group, resolves precision, builds the DeepSpeed config, seeds
    torch and loads `model_dir`'s tokenizer (data is rendered and counted with it).
    """
    check_lora_setup(settings)
    check_loggers(cfg.run.log_to)
    ctx = setup_distributed()
    precision = resolve_precision(
        settings.precision, cuda=ctx.cuda, bf16_supported=ctx.cuda and torch.cuda.is_bf16_supported()
    )
    ds_config = build_ds_config(settings, precision, cuda=ctx.cuda)
    torch.manual_seed(cfg.run.seed)
    tokenizer, fmt = setup_tokenizer(model_dir, cfg.student.prompt_format)
    return RunSetup(ctx=ctx, precision=precision, ds_config=ds_config, tokenizer=tokenizer, fmt=fmt)


# --- inputs fingerprint: rerunning a finished run is free ----------------------------


def fingerprint(cfg: Config, train_path: Path, model_dir: Path, task: str | None = None) -> str:
    """A hash of everything that decides the trained weights: data, model, settings, seed."""
    digest = hashlib.sha256()
    with train_path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    # Where checkpoints go and how processes are started do not change the result.
    settings = msgspec.structs.replace(cfg.train, save_every_steps=None, launcher="torchrun", hostfile=None)
    extra = Path(cfg.train.deepspeed_config).read_bytes() if cfg.train.deepspeed_config else b""
    digest.update(extra)
    digest.update(
        msgspec.json.encode(
            {
                "train": settings,
                "model": str(model_dir),
                "prompt_format": cfg.student.prompt_format,
                "seed": cfg.run.seed,
                # Only a non-default set enters the hash, so models trained before sets existed stay valid.
                **({"prompts": cfg.run.prompts} if cfg.run.prompts != "committee" else {}),
                **({"task": task} if task else {}),
            }
        )
    )
    return digest.hexdigest()


def is_finished(model_out: Path, print_: str) -> bool:
    """Whether `model_out` holds the model trained on the inputs with this fingerprint."""
    try:
        return msgspec.json.decode((model_out / FINGERPRINT_FILE).read_bytes(), type=ModelRecord).fingerprint == print_
    except (OSError, msgspec.DecodeError):
        return False


# --- checkpoints ---------------------------------------------------------------------


def _save_checkpoint(engine, ckpt_dir: Path, state: LoopState, print_: str, rank: int) -> None:
    """A DeepSpeed checkpoint at an optimizer-step boundary; only the newest is kept.

    The data order needs no saving: `plan_epoch` rebuilds it from (seed, epoch), and
    `step_in_epoch` says how far into it the run was. Torch's RNG is saved for
    dropout; no other RNG is drawn from during training.
    """
    tag = f"step{state.global_step:08d}"
    client = {
        "loop": msgspec.to_builtins(state),
        "fingerprint": print_,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    if rank == 0:
        (ckpt_dir / "fingerprint").write_text(print_)
        for old in ckpt_dir.glob("step*"):
            if old.name != tag and old.is_dir():
                # Each holds full optimizer state (3x the weights); one is enough to resume.
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def _resume(engine, ckpt_dir: Path, print_: str) -> LoopState:
    """The loop state of the latest checkpoint of these same inputs, or a fresh one."""
    if not (ckpt_dir / "latest").is_file():
        return LoopState()
    saved = (ckpt_dir / "fingerprint").read_text() if (ckpt_dir / "fingerprint").is_file() else ""
    if saved != print_:
        log.warning("checkpoints in %s are from other data or settings; starting from scratch", ckpt_dir)
        return LoopState()
    path, client = engine.load_checkpoint(str(ckpt_dir))
    if path is None:
        log.warning("could not load the checkpoint in %s; starting from scratch", ckpt_dir)
        return LoopState()
    torch.set_rng_state(client["torch_rng"])
    if client["cuda_rng"]:
        torch.cuda.set_rng_state_all(client["cuda_rng"])
    state = msgspec.convert(client["loop"], LoopState)
    log.info("resumed from %s: epoch %d, step %d", path, state.epoch, state.global_step)
    return state


def save_model(
    engine,
    tokenizer,
    model_out: Path,
    precision: Precision,
    record: ModelRecord,
    rank: int,
    lora: LoraSection | None = None,
) -> None:
    """The final weights as an ordinary HF directory (safetensors, config, tokenizer); with LoRA, the adapter
    (and, merging, the merged weights too: `trainer.lora.save_lora`).

    Under ZeRO-3 each rank holds a shard; gathering is a collective, so every rank
    calls it and rank 0 writes. Written beside the target and renamed into place, so
    a kill mid-save never leaves a directory that looks finished.
    """
    state_dict = engine._zero3_consolidated_16bit_state_dict() if engine.zero_optimization_partition_weights() else None
    if rank == 0:
        tmp = model_out.with_name(model_out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model = engine.module
        model.config.use_cache = True
        model.config.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
        if lora is None:
            model.save_pretrained(tmp, state_dict=state_dict)
        else:
            save_lora(model, tmp, merge=lora.merge, state_dict=state_dict)
            if lora.merge:
                tokenizer.save_pretrained(tmp / "adapter")  # so the adapter directory loads on its own too
        tokenizer.save_pretrained(tmp)
        (tmp / FINGERPRINT_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(record), indent=2))
        shutil.rmtree(model_out, ignore_errors=True)
        tmp.rename(model_out)
        log.info("model saved: %s", model_out)
    dist.barrier()


# --- progress and logs ---------------------------------------------------------------


def progress_bar(enabled: bool, label: str = "train"):
    """The rich progress bar of a training loop (disabled off rank 0)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _plot(log_path: Path, png_path: Path) -> None:
    """Loss curves (joint, feedback, rationale) per optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_step_log(log_path, TrainStepRow)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r.step for r in rows]
    for curve, label in (
        ([r.loss for r in rows], "joint"),
        ([r.loss_feedback for r in rows], "feedback"),
        ([r.loss_rationale for r in rows], "rationale"),
    ):
        ax.plot(steps, [math.nan if v is None else v for v in curve], label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def grad_norm_of(model: torch.nn.Module) -> float | None:
    """The global gradient norm (DeepSpeed keeps none without ZeRO)."""
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else None


def oom_error(train: TrainSection, step: int) -> ConfigError:
    """The one-line error for memory running out at `step`, naming what to lower."""
    return ConfigError(
        f"out of memory at step {step} (micro_batch_size={train.micro_batch_size}, max_length={train.max_length}, "
        f"zero_stage={train.zero_stage}): lower [train].micro_batch_size or max_length, raise zero_stage, "
        f"or set offload_optimizer = true"
    )


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an out-of-memory error, on GPU or CPU."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


# --- the step loop: what both trainers do around their loss ------------------------


def plan_steps(
    lengths: list[int], settings: TrainSection, world: int, seed: int
) -> tuple[Callable[[int], list[list[int]]], int, int]:
    """(epoch's micro-batches by epoch number, optimizer steps per epoch, optimizer steps in all)."""

    def epoch_batches(epoch: int) -> list[list[int]]:
        # A pure function of (seed, epoch): resuming needs only the epoch and the step in it.
        return plan_epoch(
            lengths, micro_batch_size=settings.micro_batch_size, world_size=world, grad_accum=settings.grad_accum,
            seed=seed, epoch=epoch,
        )  # fmt: skip

    steps_per_epoch = len(epoch_batches(0)) // (world * settings.grad_accum)
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    return epoch_batches, steps_per_epoch, total_steps


@contextmanager
def oom_as_config_error(settings: TrainSection, step: int) -> Iterator[None]:
    """Turn memory running out in the block into `oom_error` (one line naming what to lower)."""
    try:
        yield
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        raise oom_error(settings, step) from None


def backward_step(engine, loss: torch.Tensor, settings: TrainSection, boundary: bool) -> float | None:
    """Backward and step `engine`; at an accumulation boundary without ZeRO, the gradient norm DeepSpeed drops."""
    engine.backward(loss)
    # Without ZeRO, DeepSpeed clips fp32 gradients but does not keep the norm.
    stage0_norm = grad_norm_of(engine.module) if boundary and settings.zero_stage == 0 else None
    engine.step()  # DeepSpeed steps the optimizer only at accumulation boundaries
    return stage0_norm


def step_grad_norm(engine, stage0_norm: float | None) -> float | None:
    """The last optimizer step's global gradient norm: DeepSpeed's, else `backward_step`'s."""
    norm = engine.get_global_grad_norm()
    norm = stage0_norm if norm is None else norm
    return None if norm is None else float(norm)


def stop_name(stop: list[int]) -> str:
    """The name of the first stop signal received; SIGTERM when another rank got it."""
    return signal.Signals(stop[0]).name if stop else "SIGTERM"


class StepStats(msgspec.Struct, frozen=True):
    """One optimizer step over all ranks: three per-micro-batch means, throughput, and whether to stop."""

    means: tuple[float, float, float]
    tokens_per_s: float
    stopping: bool


class StepMeter:
    """Sums three numbers and the token count over one optimizer step's micro-batches, then over ranks.

    meter.add(loss, a, b, n_tokens)                   # each micro-batch
    stats = meter.end_step(stop, device, ga * world)  # each optimizer step, on every rank
    """

    __slots__ = ("_tick", "_window")

    def __init__(self) -> None:
        self._window = torch.zeros(4, dtype=torch.float64)
        self._tick = time.perf_counter()

    def add(self, first: float, second: float, third: float, n_tokens: int) -> None:
        self._window += torch.tensor([first, second, third, n_tokens], dtype=torch.float64)

    def end_step(self, stop: list[int], device: torch.device | str | None, micro_batches: int) -> StepStats:
        """Reduce the step's sums over ranks (a collective: every rank calls it) and start the next step."""
        # The stop request rides in the same all-reduce: every rank stops at the same step.
        stats = torch.cat([self._window, torch.tensor([float(bool(stop))], dtype=torch.float64)])
        stats = stats.to(device)
        dist.all_reduce(stats)
        stats = stats.cpu()
        self._window.zero_()
        now = time.perf_counter()
        tokens_per_s = float(stats[3]) / max(now - self._tick, 1e-9)
        self._tick = now
        means = (float(stats[0]) / micro_batches, float(stats[1]) / micro_batches, float(stats[2]) / micro_batches)
        return StepStats(means=means, tokens_per_s=tokens_per_s, stopping=bool(stats[4] > 0))


def step_row(kind: type[R], step: int, epoch: float, stats: StepStats, lr: float, grad_norm: float | None) -> R:
    """One line of a loss log: the step's mean loss, its two other means as `kind` names them, lr, norm, throughput."""
    loss, first, second = stats.means
    return kind(step, epoch, loss, lr, grad_norm, stats.tokens_per_s, first, second)


def log_step(row: StepRow, label: str, log_file: IO[bytes], xlog: ExperimentLog, rank: int) -> None:
    """Append the step's row to the loss log and the experiment loggers (rank 0 only)."""
    if rank == 0:
        log_file.write(encode_row(row))
        log_file.flush()
        figures = msgspec.structs.asdict(row)
        del figures["step"]
        xlog.scalars(label, figures, row.step)


# --- the recipe ----------------------------------------------------------------------


def student_paths(out: Path, task: str | None) -> tuple[Path, Path, Path, Path]:
    """(model, checkpoints, loss log, loss plot) of the one student, or of `task`'s own (`[train] per_dataset`)."""
    if task is None:
        return out / "model", out / "checkpoints", out / "train_log.jsonl", out / "train_loss.png"
    return (
        out / "models" / task,
        out / "checkpoints" / task,
        out / f"train_log_{task}.jsonl",
        out / f"train_loss_{task}.png",
    )


def train(
    cfg: Config, *, stop_after_steps: int | None = None, task: str | None = None, stop: list[int] | None = None
) -> TrainResult:
    """Fine-tune `[student].model` on `out_dir/train.jsonl` with FAIR's joint loss.

    `task`: train that benchmark's own student on its records only, into
    `out_dir/models/<task>` (`[train] per_dataset`).

    Resumes from the newest checkpoint of the same inputs; returns at once when
    `out_dir/model` already holds the result of these exact inputs. Raises
    `ConfigError`/`DataError` (one line) before training for bad settings or data,
    and `ConfigError` naming what to lower when memory runs out.
    `stop_after_steps` returns after that many optimizer steps, as if killed there
    (tests use it to check resume). `stop`: the list a caller's `stop_on_signals()`
    fills; a signal in it stops training once setup ends or at the next step boundary
    (`stopped_by` set). Without one, `train` handles Ctrl-C and SIGTERM itself.
    """
    if stop is None:
        with stop_on_signals() as received:
            return _train(cfg, stop_after_steps, task, received)
    return _train(cfg, stop_after_steps, task, stop)


def stopped_during_setup(stop: list[int], device: torch.device | str | None) -> str:
    """The signal's name if a stop was asked for on any rank during setup, else ""; every rank must call it.

    `device` is the engine's; DeepSpeed's CPU accelerator reports None, and torch then uses the CPU.
    """
    # One all-reduce, so every rank returns here or none does (a rank alone in the loop would hang).
    flag = torch.tensor([float(bool(stop))], dtype=torch.float64, device=device)
    dist.all_reduce(flag)
    if not flag.item():
        return ""
    return stop_name(stop)


def _train(cfg: Config, stop_after_steps: int | None, task: str | None, stop: list[int]) -> TrainResult:
    train_cfg = cfg.train
    out = cfg.out_dir
    train_path = out / "train.jsonl"
    model_out, ckpt_dir, log_path, loss_png = student_paths(out, task)
    model_dir = resolve_model_dir(cfg.student.model)
    if not train_path.is_file():
        raise DataError(f"{train_path}: no training data; run the dataset stage first")
    print_ = fingerprint(cfg, train_path, model_dir, task)
    if is_finished(model_out, print_):
        log.info("%s already holds the model trained on these inputs; nothing to do", model_out)
        return TrainResult(model_dir=str(model_out), skipped=True)

    laps = Laps(out, "train")
    setup = setup_run(cfg, train_cfg, model_dir)
    ctx, precision, tokenizer = setup.ctx, setup.precision, setup.tokenizer
    if ctx.rank != 0:
        laps.out_dir = None
    laps.lap("process group, tokenizer")
    batch_warning = effective_batch_warning(train_cfg)
    if batch_warning and ctx.rank == 0:
        log.warning("%s", batch_warning)
    declare(cfg.datasets)  # the records' task names mean what this config says (tasks/definitions.py)
    pairs, truncated = _setup_data(train_path, tokenizer, setup.fmt, train_cfg, prompt_set(cfg.run.prompts), task)
    ga, world = train_cfg.grad_accum, ctx.world_size
    epoch_batches, steps_per_epoch, total_steps = plan_steps([p.length for p in pairs], train_cfg, world, cfg.run.seed)
    pad_fraction = padding_fraction(epoch_batches(0), pairs)
    log.info(
        "batches: %d optimizer steps per epoch, %d in all; padding %.1f%% of tokens",
        steps_per_epoch,
        total_steps,
        100 * pad_fraction,
    )

    laps.lap("data")
    model = setup_model(model_dir, train_cfg, ctx.cuda, precision)
    laps.lap("load model")
    engine = setup_engine(model, train_cfg, setup.ds_config, total_steps)
    laps.lap("deepspeed engine", note=f"ZeRO {train_cfg.zero_stage}, {precision}")
    state = _resume(engine, ckpt_dir, print_)
    resumed_from = state.global_step
    by = stopped_during_setup(stop, engine.device)
    if by:
        where = f"resume from the checkpoint at step {resumed_from}" if resumed_from else "train from the start"
        log.warning(
            "training stopped by %s during setup, before any step, so no checkpoint was saved; rerun to %s", by, where
        )
        return TrainResult(model_dir=str(model_out), resumed_from_step=resumed_from, stopped_early=True,
                           stopped_by=by, checkpoint_step=resumed_from or None)  # fmt: skip

    if ctx.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        # Steps logged after the checkpoint we resumed from are redone: drop them so
        # the curve continues instead of doubling back.
        kept = [r for r in read_step_log(log_path, TrainStepRow) if r.step <= resumed_from] if resumed_from else []
        log_path.write_bytes(b"".join(map(encode_row, kept)))

    pad_id = pad_token_id(tokenizer)
    engine.train()
    laps.lap("resume")
    trained_tokens = 0  # this rank's, for the steps' tokens per second in timings.jsonl
    last_loss: float | None = None
    meter = StepMeter()  # loss, feedback, rationale, tokens over one step
    progress = progress_bar(enabled=ctx.rank == 0)
    xlog = ExperimentLog.open(cfg, "train", enabled=ctx.rank == 0)
    with progress, xlog, log_path.open("ab") if ctx.rank == 0 else open(os.devnull, "wb") as log_file:
        bar = progress.add_task("train", total=total_steps, completed=state.global_step, loss=0.0, lr=0.0, tps=0.0)
        while state.global_step < total_steps:
            mine = rank_batches(epoch_batches(state.epoch), ctx.rank, world)
            for micro in range(state.step_in_epoch * ga, len(mine)):
                batch = collate([pairs[i] for i in mine[micro]], pad_id)
                lr = engine.get_lr()[0]
                boundary = (micro + 1) % ga == 0
                with oom_as_config_error(train_cfg, state.global_step + 1):
                    logits = engine(
                        input_ids=batch.input_ids.to(engine.device),
                        attention_mask=batch.attention_mask.to(engine.device),
                    ).logits
                    parts: LossParts = fair_loss(
                        logits, batch.labels.to(engine.device), batch.n_feedback, train_cfg.alpha
                    )
                    del logits
                    stage0_norm = backward_step(engine, parts.total, train_cfg, boundary)
                meter.add(parts.total.item(), parts.feedback.item(), parts.rationale.item(), batch.n_tokens)
                trained_tokens += batch.n_tokens
                if not boundary:
                    continue

                # One optimizer step done: log it (averaged over micro-batches and ranks).
                state.global_step += 1
                state.step_in_epoch += 1
                epoch_done = micro + 1 == len(mine)
                stats = meter.end_step(stop, engine.device, ga * world)
                last_loss = stats.means[0]
                epoch_at = state.epoch + state.step_in_epoch / steps_per_epoch
                row = step_row(TrainStepRow, state.global_step, epoch_at, stats, lr,
                               step_grad_norm(engine, stage0_norm))  # fmt: skip
                log_step(row, "train", log_file, xlog, ctx.rank)
                progress.update(bar, advance=1, loss=last_loss, lr=lr, tps=stats.tokens_per_s)
                if epoch_done:
                    state.epoch += 1
                    state.step_in_epoch = 0
                every = train_cfg.save_every_steps
                stopping = stats.stopping
                if stopping or epoch_done or (every and state.global_step % every == 0):
                    _save_checkpoint(engine, ckpt_dir, state, print_, ctx.rank)
                if stopping:
                    by = stop_name(stop)
                    log.warning(
                        "training stopped by %s at step %d of %d; checkpoint saved at step %d: rerun to resume from it",
                        by,
                        state.global_step,
                        total_steps,
                        state.global_step,
                    )
                    return TrainResult(
                        model_dir=str(model_out), steps=state.global_step - resumed_from,
                        resumed_from_step=resumed_from, stopped_early=True, stopped_by=by,
                        checkpoint_step=state.global_step, final_loss=last_loss,
                    )  # fmt: skip
                if state.global_step == stop_after_steps:
                    return TrainResult(
                        model_dir=str(model_out),
                        steps=state.global_step - resumed_from,
                        resumed_from_step=resumed_from,
                        stopped_early=True,
                        final_loss=last_loss,
                    )
                if state.global_step >= total_steps:
                    break

    laps.lap("steps", trained_tokens, note=f"{state.global_step - resumed_from} optimizer steps")
    record = ModelRecord(fingerprint=print_, steps=state.global_step, final_loss=last_loss, source=str(model_dir))
    save_model(engine, tokenizer, model_out, precision, record, ctx.rank, train_cfg.lora)
    laps.lap("save model")
    if ctx.rank == 0:
        _plot(log_path, loss_png)
    return TrainResult(
        model_dir=str(model_out),
        steps=state.global_step - resumed_from,
        resumed_from_step=resumed_from,
        final_loss=last_loss,
        padding_fraction=pad_fraction,
        prompts_truncated=truncated.prompts,
        responses_truncated=truncated.responses,
    )


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM ask the trainer to stop once setup ends or at the next optimizer-step boundary.

    A second Ctrl-C stops now (KeyboardInterrupt). The handler only records the signal:
    raising in the middle of a DeepSpeed step (or a collective other ranks are in) would
    leave nothing resumable. Off the main thread, where handlers cannot be set, signals
    keep their usual effect.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning(
            "%s: stopping at the end of this optimizer step, or once setup ends (Ctrl-C again stops now)",
            signal.Signals(signum).name,
        )

    with on_stop_signals(handler):
        yield received


def run_cli(prog: str, description: str, run, argv: list[str] | None = None) -> int:
    """Parse `--config`, set up logging, call `run(cfg)`; one line and exit code 2 on a user error."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="the run's TOML config")
    parser.add_argument("--task", default=None, help="train this benchmark's own student ([train] per_dataset)")
    # The deepspeed launcher passes --local_rank; LOCAL_RANK in the environment says the same.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    if RUN_PID_ENV in os.environ:
        # Started by launch() under a launcher. A launcher SIGKILLed (a second Ctrl-C)
        # cannot pass a stop on, and run.py SIGKILLed leaves the deepspeed launcher's
        # `launch.py` running with us: guard against both here, in the worker itself.
        set_parent_death_signal(signal.SIGKILL)
        watch_run(int(os.environ[RUN_PID_ENV]))
    try:
        cfg = load_config(args.config)
        # Entered before setup, so a stop during model loading is acted on once setup ends.
        with stop_on_signals() as stop:
            result = run(cfg, task=args.task, stop=stop) if args.task else run(cfg, stop=stop)
    except CommitteeError as exc:
        log.error("%s", exc)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    log.info("%s: %s", prog, msgspec.json.encode(result).decode())
    # Stopped at a step boundary by a signal: exit as a process that signal ended would (130, 143).
    stopped_by = getattr(result, "stopped_by", None)
    return 128 + signal.Signals[stopped_by] if stopped_by else 0


def recipe_main(argv: list[str] | None = None) -> int:
    """`python -m trainer.recipe --config CFG`: train, print one line on a user error, return the exit code."""
    return run_cli("python -m trainer.recipe", (__doc__ or "").partition("\n")[0], train, argv)


if __name__ == "__main__":
    sys.exit(recipe_main())
