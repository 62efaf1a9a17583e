"""The DPO stage: preference pairs from peer review, after SFT, in the same DeepSpeed setup.

    python -m trainer.dpo --config run.toml     # one process (run.py --stage dpo does this for you)

Inputs: `out_dir/preferences.jsonl` and the SFT model in `out_dir/model` (the
configured student when there is none); settings from `[dpo]`, everything else
(precision, ZeRO, LoRA, max_length) from `[train]`. Outputs: `out_dir/model_dpo/`
(the eval stage scores it as its own checkpoint) and `dpo_log.jsonl`.

Order: the reference log-probabilities of every pair are computed once, from the
starting model, before DeepSpeed wraps it (the reference is that model frozen, so
no second copy is kept in memory). The stage is short, so it keeps no mid-run
checkpoints: a killed DPO run starts again; a finished one is not redone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import msgspec
import torch

from core.config import Config, TrainSection
from dataset.preferences import PreferencePair, load_preferences, write_preferences
from prompts import BUILTIN, Templates
from prompts.sets import student_templates
from prompts.student import PromptFormat, question_prompt, response_suffix
from student.backend import encode_prompt
from student.models import is_adapter_dir
from tasks.definitions import declare
from trainer.data import Seq, TruncationStats, collate_rows, fit_sequence, rank_batches
from trainer.dpo_loss import DpoParts, dpo_loss, sequence_logprobs
from trainer.experiment_log import ExperimentLog
from trainer.recipe import (
    FINGERPRINT_FILE,
    ModelRecord,
    StepMeter,
    TrainResult,
    backward_step,
    fingerprint,
    is_finished,
    log_step,
    oom_as_config_error,
    pad_token_id,
    plan_steps,
    progress_bar,
    resolve_model_dir,
    run_cli,
    save_model,
    setup_engine,
    setup_model,
    setup_run,
    step_grad_norm,
    step_row,
    stop_name,
    stop_on_signals,
    stopped_during_setup,
)
from trainer.step_log import DpoStepRow

log = logging.getLogger(__name__)


class PrefSeqs(msgspec.Struct, frozen=True):
    """Both tokenized answers of one preference pair; they always share a micro-batch."""

    chosen: Seq
    rejected: Seq

    @property
    def length(self) -> int:
        return max(len(self.chosen.input_ids), len(self.rejected.input_ids))


def dpo_settings(cfg: Config) -> TrainSection:
    """`[train]` with `[dpo]`'s optimisation settings: the loop, precision, ZeRO and LoRA are shared."""
    d = cfg.dpo
    # A DPO adapter sits on the SFT model, which may itself be an adapter: saved merged, it stands alone.
    lora = None if cfg.train.lora is None else msgspec.structs.replace(cfg.train.lora, merge=True)
    return msgspec.structs.replace(
        cfg.train, lora=lora, lr=d.lr, epochs=d.epochs, max_steps=d.max_steps, micro_batch_size=d.micro_batch_size,
        grad_accum=d.grad_accum, warmup_ratio=d.warmup_ratio, save_every_steps=None,
        lr_schedule="linear",  # [dpo] documents warmup then linear decay, whatever SFT's schedule
    )  # fmt: skip


def start_model_dir(cfg: Config) -> Path:
    """The SFT model when the train stage left one (full weights or an adapter), else the configured student."""
    sft = cfg.out_dir / "model"
    return sft if (sft / "config.json").is_file() or is_adapter_dir(sft) else resolve_model_dir(cfg.student.model)


def tokenize_preferences(
    pairs: list[PreferencePair], tokenizer, fmt: PromptFormat, max_length: int, templates: Templates = BUILTIN
) -> tuple[list[PrefSeqs], TruncationStats]:
    """Each pair as (question prompt -> chosen, question prompt -> rejected), rendered like the student's exam
    (with `templates`, the run's committee-layout templates)."""
    suffix = response_suffix(tokenizer)
    stats = TruncationStats()
    out = []
    for p in pairs:
        prompt = encode_prompt(tokenizer, question_prompt(tokenizer, fmt, p.task, p.question, templates))
        chosen, rejected = tokenizer(
            [p.chosen[-1].content + suffix, p.rejected[-1].content + suffix], add_special_tokens=False
        )["input_ids"]
        out.append(
            PrefSeqs(fit_sequence(prompt, chosen, max_length, stats), fit_sequence(prompt, rejected, max_length, stats))
        )
    return out, stats


def _forward_logprobs(model, seqs: list[PrefSeqs], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed response log-probs of (chosen, rejected) for `seqs`, and the batch's token count."""
    batch = collate_rows([s.chosen for s in seqs] + [s.rejected for s in seqs], len(seqs), pad_id)
    logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
    logprobs = sequence_logprobs(logits, batch.labels.to(device))
    return logprobs[: len(seqs)], logprobs[len(seqs) :], batch.n_tokens


@torch.no_grad()
def reference_logprobs(model: torch.nn.Module, seqs: list[PrefSeqs], pad_id: int, batch_size: int) -> torch.Tensor:
    """(pairs, 2) summed log-probs of chosen and rejected under the starting model, in eval mode.

    Every rank computes all pairs: the data is small, and it saves a gather.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(seqs), batch_size):
        chosen, rejected, _ = _forward_logprobs(model, seqs[start : start + batch_size], pad_id, device)
        rows.append(torch.stack([chosen, rejected], dim=1).cpu())
    model.train(was_training)
    return torch.cat(rows)


def _fingerprint(cfg: Config, prefs_path: Path, start: Path, settings: TrainSection) -> str:
    base = fingerprint(msgspec.structs.replace(cfg, train=settings), prefs_path, start)
    # The SFT model changes whenever it is retrained; its own fingerprint says so.
    sft_print = (start / FINGERPRINT_FILE).read_bytes() if (start / FINGERPRINT_FILE).is_file() else b""
    return hashlib.sha256(base.encode() + msgspec.json.encode(cfg.dpo) + sft_print).hexdigest()


def train_dpo(cfg: Config, *, stop: list[int] | None = None) -> TrainResult:
    """Run DPO from the SFT model on `out_dir/preferences.jsonl` (rebuilt from dataset.jsonl first).

    Returns at once when `out_dir/model_dpo` already holds the result of these inputs.
    Raises `ConfigError`/`DataError` (one line) before training: no pairs, bad settings.
    `stop`: the list a caller's `stop_on_signals()` fills; a signal in it stops DPO once
    setup ends or at the next step boundary (`stopped_by` set). Without one, `train_dpo`
    handles Ctrl-C and SIGTERM itself.
    """
    if stop is None:
        with stop_on_signals() as received:
            return _train_dpo(cfg, received)
    return _train_dpo(cfg, stop)


def _stopped(by: str, step: int, total_steps: int, model_out: Path) -> TrainResult:
    # DPO runs are short next to SFT and keep no mid-run checkpoints: a rerun starts over.
    log.warning(
        "DPO stopped by %s at step %d of %d; DPO keeps no mid-run checkpoint, so nothing was saved: rerun "
        "to start it over",
        by,
        step,
        total_steps,
    )
    return TrainResult(model_dir=str(model_out), steps=step, stopped_early=True, stopped_by=by)


def _train_dpo(cfg: Config, stop: list[int]) -> TrainResult:
    out = cfg.out_dir
    settings = dpo_settings(cfg)
    prefs_path, model_out = out / "preferences.jsonl", out / "model_dpo"
    declare(cfg.datasets)  # the records' task names mean what this config says (tasks/definitions.py)
    if (out / "dataset.jsonl").is_file():
        write_preferences(out, cfg.dpo.min_margin, student_templates(cfg.run.prompts))
    records = load_preferences(prefs_path)
    start = start_model_dir(cfg)
    print_ = _fingerprint(cfg, prefs_path, start, settings)
    if is_finished(model_out, print_):
        log.info("%s already holds the DPO model of these inputs; nothing to do", model_out)
        return TrainResult(model_dir=str(model_out), skipped=True)
    setup = setup_run(cfg, settings, start)
    ctx, precision, tokenizer = setup.ctx, setup.precision, setup.tokenizer
    seqs, truncated = tokenize_preferences(
        records, tokenizer, setup.fmt, settings.max_length, student_templates(cfg.run.prompts)
    )
    log.info("data ready: %d preference pairs from %s (%d responses truncated)", len(seqs), prefs_path,
             truncated.responses)  # fmt: skip
    ga, world = settings.grad_accum, ctx.world_size
    epoch_batches, _, total_steps = plan_steps([s.length for s in seqs], settings, world, cfg.run.seed)

    model = setup_model(start, settings, ctx.cuda, precision)
    pad_id = pad_token_id(tokenizer)
    reference = reference_logprobs(model, seqs, pad_id, settings.micro_batch_size)
    engine = setup_engine(model, settings, setup.ds_config, total_steps)
    by = stopped_during_setup(stop, engine.device)
    if by:
        return _stopped(by, 0, total_steps, model_out)

    log_path = out / "dpo_log.jsonl"
    engine.train()
    step = epoch = 0
    last_loss: float | None = None
    meter = StepMeter()  # loss, reward accuracy, reward margin, tokens over one step
    xlog = ExperimentLog.open(cfg, "dpo", enabled=ctx.rank == 0)
    with (
        progress_bar(ctx.rank == 0, "dpo") as progress,
        xlog,
        log_path.open("wb") if ctx.rank == 0 else open(os.devnull, "wb") as log_file,
    ):
        task = progress.add_task("dpo", total=total_steps, loss=0.0, lr=0.0, tps=0.0)
        while step < total_steps:
            mine = rank_batches(epoch_batches(epoch), ctx.rank, world)
            for micro, indices in enumerate(mine):
                lr = engine.get_lr()[0]
                boundary = (micro + 1) % ga == 0
                with oom_as_config_error(settings, step + 1):
                    chosen, rejected, n_tokens = _forward_logprobs(
                        engine, [seqs[i] for i in indices], pad_id, engine.device
                    )
                    ref = reference[indices].to(engine.device)
                    parts: DpoParts = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], cfg.dpo.beta)
                    stage0_norm = backward_step(engine, parts.total, settings, boundary)
                meter.add(parts.total.item(), parts.accuracy.item(), parts.margin.item(), n_tokens)
                if not boundary:
                    continue
                step += 1
                stats = meter.end_step(stop, engine.device, ga * world)
                last_loss = stats.means[0]
                row = step_row(DpoStepRow, step, epoch + (micro + 1) / len(mine), stats, lr,
                               step_grad_norm(engine, stage0_norm))  # fmt: skip
                log_step(row, "dpo", log_file, xlog, ctx.rank)
                progress.update(task, advance=1, loss=last_loss, lr=lr, tps=stats.tokens_per_s)
                if stats.stopping:
                    return _stopped(stop_name(stop), step, total_steps, model_out)
                if step >= total_steps:
                    break
            epoch += 1

    record = ModelRecord(fingerprint=print_, steps=step, final_loss=last_loss, source=str(start), objective="dpo")
    save_model(engine, tokenizer, model_out, precision, record, ctx.rank, settings.lora)
    return TrainResult(model_dir=str(model_out), steps=step, final_loss=last_loss,
                       responses_truncated=truncated.responses)  # fmt: skip


def dpo_main(argv: list[str] | None = None) -> int:
    """`python -m trainer.dpo --config CFG`: the DPO stage in this process (or one rank of a launcher's)."""
    return run_cli("python -m trainer.dpo", (__doc__ or "").partition("\n")[0], train_dpo, argv)


if __name__ == "__main__":
    sys.exit(dpo_main())
