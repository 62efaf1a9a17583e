"""The student on vLLM's offline engine: the default where a CUDA GPU and vllm are present.

vLLM batches continuously on its own; we hand it prompts in chunks only so that
results surface (and mistakes stream to the teachers) before the whole split is
done. vllm is imported lazily: its wheels are CUDA builds and never installed on
CPU machines.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from core.config import StudentSection
from core.errors import ConfigError
from student.backend import Sampling, encode_prompt
from student.models import is_adapter_dir

log = logging.getLogger(__name__)

# Prompts per vLLM call. Large enough that the engine's own scheduler stays full
# (it batches far more than a CPU backend), small enough that the first mistakes
# reach the teachers within seconds.
_CHUNK = 256

NOT_INSTALLED = "backend 'vllm' needs a CUDA GPU and `pip install vllm`; use backend = 'hf' on this machine"


def vllm_usable() -> bool:
    """True when vllm is importable and a CUDA GPU is visible (vllm's own default test)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class VLLMBackend:
    """`vllm.LLM` generation. Build with `VLLMBackend.load`."""

    def __init__(self, llm: Any, *, model_id: str, sampling: Sampling, chunk: int) -> None:
        from vllm import SamplingParams  # pyright: ignore[reportMissingImports]  # the [gpu] extra, absent on CPU CI

        self._llm = llm
        self.model_id = model_id
        self.sampling = sampling
        self.batch_size = chunk
        s = sampling
        self._params = (
            SamplingParams(temperature=0.0, max_tokens=s.max_new_tokens)
            if s.greedy
            else SamplingParams(
                temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_new_tokens, seed=s.seed
            )
        )

    @classmethod
    def load(cls, model_path: Path | str, section: StudentSection, *, sampling: Sampling) -> VLLMBackend:
        """Start the vLLM engine with `[student]`'s parallelism, dtype, memory and length settings."""
        if not vllm_usable():
            raise ConfigError(NOT_INSTALLED)
        if is_adapter_dir(Path(model_path)):
            raise ConfigError(
                f"{model_path} holds a LoRA adapter, and the vllm backend loads full weights: set "
                f"[train.lora].merge = true and rerun the train stage, or use [student].backend = 'hf'"
            )
        from vllm import LLM  # pyright: ignore[reportMissingImports]  # the [gpu] extra, absent on CPU CI

        llm = LLM(
            model=str(model_path),
            tensor_parallel_size=section.tensor_parallel_size,
            dtype=section.dtype,
            gpu_memory_utilization=section.gpu_memory_utilization,
            max_model_len=section.max_model_len,
            seed=sampling.seed,
        )
        log.info("vllm backend ready: %s, tp %d", model_path, section.tensor_parallel_size)
        return cls(llm, model_id=str(model_path), sampling=sampling, chunk=max(section.batch_size, _CHUNK))

    @property
    def tokenizer(self) -> Any:
        return self._llm.get_tokenizer()

    async def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        """Yield `(index, completion)` chunk by chunk, in prompt order within a chunk."""
        tokenizer = self.tokenizer
        for start in range(0, len(prompts), self.batch_size):
            # Token ids, not strings: vLLM would add its own BOS to a chat-templated prompt.
            chunk = [
                {"prompt_token_ids": encode_prompt(tokenizer, p)} for p in prompts[start : start + self.batch_size]
            ]
            outputs = await anyio.to_thread.run_sync(self._run, chunk)
            for offset, out in enumerate(outputs):
                yield start + offset, out.outputs[0].text

    def _run(self, chunk: list[dict[str, list[int]]]) -> list[Any]:
        return self._llm.generate(chunk, self._params, use_tqdm=False)

    async def close(self) -> None:
        """Drop the engine so the GPU memory is free for the trainer."""
        del self._llm
        import gc

        gc.collect()
