"""A student backend that counts what it generates: for the progress display, the run report and bench/.

It wraps any backend and passes everything through, so the exam and eval code
stay as they are; stored answers never reach the backend, so the counts are of
this run's generation only.

    backend = MeteredBackend(make_backend(cfg.student))
    ...                                  # exam or eval
    backend.tokens / backend.generate_s  # generated tokens per second
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence

from prompts.student import ChatTokenizer
from student.backend import Sampling, StudentBackend


class MeteredBackend:
    """`inner` with counters: prompts asked, completions done, their tokens and the time spent generating.

    `tokens` is None for a backend whose tokenizer cannot count (a remote server's template).
    """

    def __init__(self, inner: StudentBackend) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.sampling: Sampling = inner.sampling
        self.batch_size: int = inner.batch_size
        self.asked = 0
        self.done = 0
        self.tokens: int | None = 0 if callable(inner.tokenizer) else None
        self.generate_s = 0.0

    @property
    def tokenizer(self) -> ChatTokenizer:
        return self.inner.tokenizer

    async def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        """The inner backend's completions, counted as they pass."""
        self.asked += len(prompts)
        start = time.perf_counter()
        try:
            async for i, text in self.inner.generate(prompts):
                self.done += 1
                if self.tokens is not None:
                    # Re-encoding the text (+1 for the stop token) counts what was generated, whatever the backend.
                    self.tokens += len(self.inner.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # type: ignore[operator]
                yield i, text
        finally:
            self.generate_s += time.perf_counter() - start

    def answered(self) -> float:
        """Completions done, plus the share of the batch in progress where the backend reports it (hf)."""
        return self.done + float(getattr(self.inner, "partial", 0.0))

    def tokens_per_s(self) -> float | None:
        """Generated tokens per second of generating; None before any or when tokens are not counted."""
        if self.tokens is None or self.generate_s <= 0:
            return None
        return self.tokens / self.generate_s

    async def close(self) -> None:
        await self.inner.close()


def metered(backend: StudentBackend) -> MeteredBackend:
    """`backend` counted: itself when it already is, else wrapped."""
    return backend if isinstance(backend, MeteredBackend) else MeteredBackend(backend)
