"""The student on transformers `generate`: the CPU backend (and a GPU one where vLLM is absent).

Prompts are sorted by length and cut into batches of `batch_size`, so a batch
pads little; each batch is left-padded (a decoder-only model continues from the
right edge) and runs in a worker thread, so teacher calls streaming on the event
loop are never held up by a forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from student.backend import Sampling, encode_prompt

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    """`auto` is bf16 on CUDA and fp32 on CPU.

    On a CPU with bf16 matrix instructions (AVX-512 BF16, AMX) bf16 generates 2-3x
    faster than fp32, but batched outputs drift from unbatched ones; on one without
    (AVX2 only) torch's bf16 matmul is a slow path, 17x slower than fp32 on this
    project's 2-core test machine, so `auto` never picks it there.
    """
    import torch

    if setting == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    dtype = getattr(torch, setting)
    if device == "cpu" and dtype in (torch.bfloat16, torch.float16) and not cpu_has_fast_half(dtype):
        log.warning(
            "[student] dtype = %r on a CPU without %s matrix instructions (torch sees %s): generation is many times "
            'slower than float32; set [student] dtype = "auto"',
            setting,
            setting,
            torch.backends.cpu.get_cpu_capability(),
        )
    return dtype


def cpu_has_fast_half(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs `dtype` (bf16 or fp16) matmuls natively on this CPU, as torch itself checks it."""
    import torch

    # torch's own checks (used by its CPU autocast tests and inductor); private, so a missing one means "no".
    check = "_is_mkldnn_bf16_supported" if dtype == torch.bfloat16 else "_is_mkldnn_fp16_supported"
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


class HFBackend:
    """transformers generation, batched with left padding. Build with `HFBackend.load`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        sampling: Sampling,
        batch_size: int,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.model_id = model_id
        self.sampling = sampling
        self.batch_size = batch_size
        # Stop at the tokenizer's eos (ChatML's <|im_end|>) and at whatever the model config calls eos.
        stops = model.generation_config.eos_token_id
        stops = list(stops) if isinstance(stops, (list, tuple)) else [] if stops is None else [stops]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
            stops.append(tokenizer.eos_token_id)
        self._stop_ids = stops
        # Answers' worth of the batch being generated (its rows x decode steps / max_new_tokens), so a progress
        # display moves within a batch; written by the generating thread, read by the display.
        self.partial = 0.0

    @classmethod
    def load(cls, model_path: Path | str, *, sampling: Sampling, batch_size: int, dtype: str = "auto") -> HFBackend:
        """Load model and tokenizer from a directory or hub id onto CUDA if present, else CPU."""
        import torch
        from transformers import AutoTokenizer

        from student.models import load_causal_lm

        device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = load_causal_lm(model_path, dtype=resolve_dtype(dtype, device))
        # transformers types PreTrainedModel.to through a decorator annotated for another class.
        model.to(device).eval()  # pyright: ignore[reportArgumentType]
        log.info("hf backend ready: %s on %s, %s, batch %d", model_path, device, model.dtype, batch_size)
        return cls(model, tokenizer, model_id=str(model_path), sampling=sampling, batch_size=batch_size)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    async def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        """Yield `(index, completion)` batch by batch, shortest prompts first."""
        encoded = [encode_prompt(self._tokenizer, p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            texts = await anyio.to_thread.run_sync(self._generate_batch, [encoded[i] for i in batch], start)
            self.partial = 0.0
            for i, text in zip(batch, texts, strict=True):
                yield i, text

    def _generate_batch(self, batch: list[list[int]], position: int) -> list[str]:
        import torch

        padded = self._tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt")
        padded = {k: v.to(self._model.device) for k, v in padded.items()}
        s = self.sampling
        knobs: dict[str, object] = (
            {"do_sample": False}
            if s.greedy
            else {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k}
        )
        # Seeded per batch from its position, so the same prompts with the same
        # settings give the same answers whatever ran on this process before.
        torch.manual_seed(s.seed + position)
        rows, prompt_len = padded["input_ids"].shape

        def on_step(length: int) -> None:
            self.partial = rows * min(1.0, (length - prompt_len) / s.max_new_tokens)

        with torch.inference_mode():
            # generate() lives on GenerationMixin, which every causal LM class (not PreTrainedModel) mixes in.
            out = self._model.generate(  # pyright: ignore[reportCallIssue]
                **padded,
                max_new_tokens=s.max_new_tokens,
                eos_token_id=self._stop_ids,
                pad_token_id=self._tokenizer.pad_token_id,
                stopping_criteria=_count_steps(on_step),
                **knobs,
            )
        new_tokens = out[:, padded["input_ids"].shape[1] :]
        return self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    async def close(self) -> None:
        """Drop the model so its memory can go back (the trainer may load next)."""
        del self._model
        import gc

        gc.collect()


def _count_steps(on_step: Callable[[int], None]) -> list:
    """A stopping criterion that never stops and tells `on_step` the sequence length after each decode step."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CountSteps(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: object, **kwargs: object) -> torch.BoolTensor:
            on_step(input_ids.shape[1])
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    return StoppingCriteriaList([CountSteps()])
