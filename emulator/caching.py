"""Prompt caching as the providers report it: cached tokens when a prompt prefix repeats.

- OpenAI caches automatically: prompts of 1024 tokens or more, hits in 128-token steps, and
  `usage.prompt_tokens_details.cached_tokens` counts them inside `prompt_tokens`
  (https://platform.openai.com/docs/guides/prompt-caching).
- Gemini 2.5 caches implicitly, `usageMetadata.cachedContentTokenCount` inside
  `promptTokenCount` (https://ai.google.dev/gemini-api/docs/caching#implicit-caching); its
  minimums differ per model (1024 for Flash, more for Pro): the emulator uses OpenAI's rule.
- Anthropic caches only up to a `cache_control` breakpoint of at least 1024 tokens (2048 for
  Sonnet 4.6 and Haiku 3/3.5, 4096 for Opus 4.5/4.6 and Haiku 4.5; a shorter one is processed
  without caching): the first request writes (`cache_creation_input_tokens`), later ones read
  (`cache_read_input_tokens`), both outside `input_tokens`
  (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).

Caches are per model and never expire here (the providers keep them 5 minutes or more,
longer than a test). An Anthropic entry can be read only once the response that writes it
has begun ("the cache entry is only available after the first response begins"): calls sent
together all write it.
"""

from __future__ import annotations

import hashlib
import re

from emulator.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens, prompt_pieces

MIN_CACHED_TOKENS = 1024
# Anthropic's longer minimums by model, the "Cache limitations" list of the page above; kept
# apart from adapters/anthropic.py on purpose, as emulator/reasoning.py is from core/capabilities.py.
_ANTHROPIC_MINIMUMS = ((re.compile(r"opus-4-[56]|haiku-4-5"), 4096), (re.compile(r"sonnet-4-6|haiku"), 2048))
CACHE_STEP_TOKENS = 128


class PromptCache:
    """Prefixes each model has seen: `implicit` for OpenAI and Gemini, `explicit` for Anthropic breakpoints."""

    __slots__ = ("_seen", "_writing")

    def __init__(self) -> None:
        self._seen: dict[str, set[bytes]] = {}
        # Anthropic breakpoints whose writing response has not begun yet: not readable.
        self._writing: set[tuple[str, bytes]] = set()

    def implicit(self, model: str, messages: list[tuple[str, str]]) -> int:
        """Cached tokens of this prompt (the longest step boundary seen before), remembering its own."""
        seen = self._seen.setdefault(model, set())
        pieces = prompt_pieces(messages)
        digest = hashlib.sha256()
        cached = 0
        for end in range(CACHE_STEP_TOKENS, len(pieces) + 1, CACHE_STEP_TOKENS):
            digest.update("\x00".join(pieces[end - CACHE_STEP_TOKENS : end]).encode())
            if end < MIN_CACHED_TOKENS:
                continue
            key = digest.digest()
            if key in seen:
                cached = end
            else:
                seen.add(key)
        return cached

    def explicit(self, model: str, prefix: str, tokens: int, min_tokens: int) -> tuple[int, int]:
        """(read, written) tokens for a breakpoint whose prefix is `prefix`, `tokens` long.

        A write becomes readable at `begun(model, prefix)`, when its response starts.
        """
        if tokens < min_tokens:
            return 0, 0
        key = hashlib.sha256(prefix.encode()).digest()
        if key in self._seen.setdefault(model, set()):
            return tokens, 0
        self._writing.add((model, key))
        return 0, tokens

    def begun(self, model: str, prefix: str) -> None:
        """The response to a request with this breakpoint has begun: what it wrote can be read."""
        key = hashlib.sha256(prefix.encode()).digest()
        if (model, key) in self._writing:
            self._writing.discard((model, key))
            self._seen.setdefault(model, set()).add(key)


def breakpoint_tokens(blocks: list[tuple[str, str, bool]]) -> tuple[str, int] | None:
    """The prefix up to the last `cache_control` block of an Anthropic request, and its tokens.

    `blocks`: (role, text, marked) in prompt order (system first); a new role starts a message.
    """
    prefix: list[str] = []
    tokens = 0
    found: tuple[str, int] | None = None
    previous = None
    for role, text, marked in blocks:
        if role != previous:
            tokens += MESSAGE_OVERHEAD_TOKENS
            previous = role
        prefix.append(f"{role}\x00{text}")
        tokens += count_tokens(text)
        if marked:
            found = ("\x01".join(prefix), tokens)
    return found


def anthropic_min_tokens(model: str) -> int:
    """The shortest prefix an Anthropic `model` caches at a breakpoint."""
    for pattern, tokens in _ANTHROPIC_MINIMUMS:
        if pattern.search(model):
            return tokens
    return MIN_CACHED_TOKENS
