"""The one interface every student backend (vllm, hf, openai) offers the exam and eval.

A backend turns prompt strings into completions and yields them as they finish,
so the exam can hand a mistake to the teachers while later questions are still
being answered. Prompts are built by `prompts.student.question_prompt` with the
backend's own tokenizer: exam, training and eval see the same layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

import msgspec

from core.config import StudentSection
from prompts.student import ChatTokenizer


class Sampling(msgspec.Struct, frozen=True, kw_only=True):
    """How the student samples; part of the answers store key, so changing it redoes the answers."""

    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 512
    greedy: bool = False
    seed: int = 0

    @classmethod
    def from_section(cls, section: StudentSection, *, seed: int = 0) -> Sampling:
        """The sampling settings of `[student]`, seeded with the run's seed."""
        return cls(
            temperature=section.temperature,
            top_p=section.top_p,
            top_k=section.top_k,
            max_new_tokens=section.max_new_tokens,
            greedy=section.greedy,
            seed=seed,
        )

    def fingerprint(self, *extra: str) -> str:
        """A short stable hash of these settings (plus `extra`, e.g. the prompt format)."""
        # Greedy decoding ignores the sampling knobs and the seed: drop them, so
        # flipping temperature under greedy does not redo identical answers.
        fields = (
            {"greedy": True, "max_new_tokens": self.max_new_tokens} if self.greedy else msgspec.structs.asdict(self)
        )
        blob = msgspec.json.encode([fields, list(extra)], order="sorted")
        return hashlib.sha256(blob).hexdigest()[:16]


class StudentBackend(Protocol):
    """What the exam and eval need from a backend.

    `model_id` names the weights (a path, a hub id or a server-side model name);
    with `sampling` it keys stored answers. `batch_size` is about how many
    completions arrive together; the exam commits answers that many at a time.
    `close()` frees the model or session.
    """

    model_id: str
    sampling: Sampling
    batch_size: int

    @property
    def tokenizer(self) -> ChatTokenizer: ...

    def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        """Yield `(index into prompts, completion text)` as each completion is done, in any order."""
        ...

    async def close(self) -> None: ...


def encode_prompt(tokenizer: object, text: str) -> list[int]:
    """Token ids of a rendered prompt, the same way for every local backend.

    A chat template already writes the model's begin token; adding special tokens
    again would give some tokenizers (Llama's) a doubled BOS. Prompts that do not
    start with it (the instruction layout) get the tokenizer's usual specials.
    """
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])  # type: ignore[operator]
