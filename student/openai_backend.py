"""The student behind any OpenAI-compatible server (`vllm serve`, llama.cpp's server), through the engine.

Calls go through one `ChatClient` session and one `Lane`, so the student server
gets the same admission, retries and timeouts as a teacher.

Every prompt is sent as a single user message. The server applies the model's
chat template itself, so with prompt format "chat" the message is the plain
instruction + question (the stand-in tokenizer below makes `question_prompt`
produce exactly that); with "instruction" it is the "### Instruction" layout, sent
as the user message like a completion prompt. OpenAI's API has no top_k: it is not
sent; greedy is temperature 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Sequence

import anyio

from adapters.client import ChatClient
from core.calls import ChatRequest, Message
from core.config import StudentSection
from core.errors import CommitteeError, ConfigError
from engine.lane import CallOutcome, Lane, LaneLimits
from student.backend import Sampling

log = logging.getLogger(__name__)

# Local servers ignore the key, but the client must send one.
_NO_KEY = "no-key"


class ServerTemplate:
    """Stands in for a tokenizer: the server owns the chat template, so a chat prompt is the user text."""

    # Any non-empty value: it tells `resolve_format("auto")` that chat is available.
    chat_template = "applied by the server"
    eos_token = None

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: object) -> str:
        return conversation[-1]["content"]


class OpenAIBackend:
    """Chat completions against a server of the student. Build with `OpenAIBackend.from_section`."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        sampling: Sampling,
        max_in_flight: int,
        rpm: float | None = None,
        max_attempts: int = 6,
    ) -> None:
        self.model_id = model
        self.sampling = sampling
        # A batch is one wave of max_in_flight calls (see `generate`).
        self.batch_size = max_in_flight
        self._base_url = base_url
        self._api_key = api_key
        self._limits = LaneLimits(rpm=rpm, max_in_flight=max_in_flight, max_attempts=max_attempts)
        self._tokenizer = ServerTemplate()

    @classmethod
    def from_section(cls, section: StudentSection, *, model: str, sampling: Sampling) -> OpenAIBackend:
        """The backend `[student]` describes; ConfigError when base_url or the key's variable is missing."""
        if not section.base_url:
            raise ConfigError(
                "[student] backend = 'openai' needs base_url, the student server's address "
                "(e.g. http://127.0.0.1:8000/v1 for `vllm serve`)"
            )
        api_key = _NO_KEY
        if section.api_key_env:
            api_key = os.environ.get(section.api_key_env, "")
            if not api_key:
                raise ConfigError(f"[student] api_key_env: environment variable {section.api_key_env} is not set")
        return cls(
            base_url=section.base_url,
            model=model,
            api_key=api_key,
            sampling=sampling,
            max_in_flight=section.max_in_flight,
            rpm=section.rpm,
        )

    @property
    def tokenizer(self) -> ServerTemplate:
        return self._tokenizer

    def _request(self, prompt: str) -> ChatRequest:
        s = self.sampling
        return ChatRequest(
            model=self.model_id,
            messages=(Message("user", prompt),),
            temperature=0.0 if s.greedy else s.temperature,
            top_p=1.0 if s.greedy else s.top_p,
            max_tokens=s.max_new_tokens,
        )

    async def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        """Yield `(index, completion)` wave by wave; raises CommitteeError when a call fails for good.

        Each wave of `batch_size` calls runs in its own task group and is yielded
        after the group exits: yielding from inside a task group would let the
        consumer's code run inside our cancel scope. The lane keeps the server busy
        within a wave; between waves it briefly waits for the slowest call.
        """
        async with ChatClient(
            "openai", api_key=self._api_key, base_url=self._base_url, max_connections=self.batch_size
        ) as client:
            lane = Lane("student", client, self._limits)
            for start in range(0, len(prompts), self.batch_size):
                wave = range(start, min(start + self.batch_size, len(prompts)))
                outcomes: dict[int, CallOutcome] = {}
                async with anyio.create_task_group() as tg:
                    for i in wave:
                        tg.start_soon(self._answer, lane, i, prompts[i], outcomes)
                # Successes first (the exam stores them), then one error rather than an ExceptionGroup.
                failed = [i for i in wave if outcomes[i].result is None]
                for i in wave:
                    result = outcomes[i].result
                    if result is not None:
                        yield i, result.text
                if failed:
                    raise CommitteeError(
                        f"student server {self._base_url}: {len(failed)} prompt(s) failed, "
                        f"first: {outcomes[failed[0]].error}; rerun to retry them"
                    )

    async def _answer(self, lane: Lane, index: int, prompt: str, outcomes: dict[int, CallOutcome]) -> None:
        outcomes[index] = await lane.call(self._request(prompt))

    async def close(self) -> None:
        """Nothing to free: each `generate` opens and closes its own session."""
