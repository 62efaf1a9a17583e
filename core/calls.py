"""The provider-neutral request and result every adapter speaks.

A `ChatRequest` is what the engine asks of a teacher; a `ChatResult` is what comes
back, with the usage the provider reported (the only token figures we bill on).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Role = Literal["system", "user", "assistant"]
ProviderName = Literal["openai", "gemini", "anthropic"]
# Who serves an OpenAI-wire teacher: the URL, auth header and rate-limit headers differ (adapters/hosts.py).
HostName = Literal["openai", "azure", "openrouter", "vllm", "llamacpp", "together", "groq", "deepinfra", "compatible"]


class Message(msgspec.Struct, frozen=True):
    role: Role
    content: str


class Reasoning(msgspec.Struct, frozen=True, kw_only=True):
    """How much a reasoning model may think, resolved from a teacher's `reasoning` (core/capabilities.py).

    `effort`: OpenAI's `reasoning_effort` (None where the provider takes a budget).
    `budget_tokens`: Anthropic's `thinking.budget_tokens`, Gemini's `thinkingBudget` (0: thinking
    off); for an effort, the thinking allowance added to the token limit.
    """

    effort: str | None = None
    budget_tokens: int = 0


TokenLimitField = Literal["max_tokens", "max_completion_tokens"]


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One chat completion request, the same for every provider.

    `max_tokens` is the visible answer; an adapter whose API counts thinking in the same
    limit adds `reasoning.budget_tokens` to it (`output_limit`). `temperature` / `top_p`
    None: not sent (the model rejects them). The fields after `max_tokens` are left out of
    the store's content key at their defaults, so keys of plain requests never change.
    """

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = 0.8
    top_p: float | None = 1.0
    max_tokens: int = 512
    # OpenAI's o-series and GPT-5 family take only the newer `max_completion_tokens`.
    token_field: TokenLimitField = "max_tokens"
    reasoning: Reasoning | None = None

    @property
    def output_limit(self) -> int:
        """Output tokens the request may bill: the visible answer plus any thinking budget."""
        return self.max_tokens + (self.reasoning.budget_tokens if self.reasoning is not None else 0)

    # Ask for the review score through the provider's structured output (a `ReviewScore` JSON
    # as the answer's text) instead of free text ending in "[4]".
    structured_score: bool = False
    # Characters at the start of the last message that other calls to this model repeat
    # (instructions, question, hint): Anthropic may cache them. Not part of the answer.
    cache_prefix_chars: int = 0


class ReviewScore(msgspec.Struct, frozen=True):
    """A structured review: the reviewer's reasoning, then its 1-5 score.

    What every adapter returns as the text of a `structured_score` answer, encoded as JSON;
    reasoning comes first so the model thinks before it scores.
    """

    reasoning: str
    score: int


# `ReviewScore` as a JSON Schema, in the subset OpenAI's strict structured outputs and Anthropic's
# tool input schemas both accept (every property required, no extra ones).
REVIEW_SCORE_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "description": "A brief check of the rationale against the hint."},
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5], "description": "1 wrong, 3 real flaws, 5 sound."},
    },
    "required": ["reasoning", "score"],
    "additionalProperties": False,
}


class HostRoute(msgspec.Struct, frozen=True, kw_only=True):
    """Where an OpenAI-wire request goes beyond `base_url`: the host kind and its extra settings."""

    host: HostName = "openai"
    # Azure OpenAI: the deployment in the URL path and the api-version query parameter.
    deployment: str | None = None
    api_version: str | None = None
    # OpenRouter's optional app attribution headers (HTTP-Referer, X-Title).
    site_url: str | None = None
    site_title: str | None = None


class RateLimitInfo(msgspec.Struct, kw_only=True):
    """What the provider's rate-limit headers said, when it sent any."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    # Anthropic limits input and output tokens apart (ITPM, OTPM); its plain "tokens"
    # headers then report whichever is most restrictive, not a combined TPM.
    limit_input_tokens: int | None = None
    limit_output_tokens: int | None = None


class UsageDetail(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a call's usage shown or priced apart; each lies inside `input_tokens` or `output_tokens`.

    `reasoning_tokens` (inside output, billed at the output rate; Anthropic does not report
    it apart, its adapter estimates it), `cache_read_tokens` (inside input, billed at the
    cached-input rate), `cache_write_tokens` (inside input, Anthropic's cache writes).
    """

    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


NO_DETAIL = UsageDetail()


class ChatResult(msgspec.Struct, kw_only=True):
    """A successful completion: text, provider-reported usage, finish reason, latency.

    `usage_reported` False: the provider sent no usage, the token counts are 0 and the
    engine estimates them (never bills such an answer as free).
    """

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    latency_s: float
    rate_limit: RateLimitInfo | None = None
    usage_reported: bool = True
    http_status: int = 200
    detail: UsageDetail = NO_DETAIL


# No chat call comes near this many tokens; a usage figure past it is garbled, and
# billing it would break the money accounting (and the TPM bucket, and SQLite's INTEGER).
MAX_REPORTED_TOKENS = 100_000_000
# A usage field missing from a usage object means none of that kind (Gemini omits zeros).
ZERO_TOKENS = msgspec.Raw(b"0")


def reported_tokens(raw: msgspec.Raw, *, null: int | None = None) -> int | None:
    """A usage figure as sent, or None when it is no plausible token count.

    Usage fields are decoded as `msgspec.Raw`: a garbled figure (negative, a bool, a
    float, 400 digits, 1e400) must cost us the usage, which the lane then estimates,
    not the billed answer it came with. `null` is what a JSON null means (None: not reported).
    """
    text = bytes(raw)
    if text == b"null":
        return null
    # Digits only: no sign, no fraction or exponent; the length check keeps int() cheap.
    if not text.isdigit() or len(text) > 9:
        return None
    tokens = int(text)
    return tokens if tokens <= MAX_REPORTED_TOKENS else None


def plausible_tokens(tokens: int | None) -> bool:
    """Whether a token count is one we may bill (see MAX_REPORTED_TOKENS)."""
    return type(tokens) is int and 0 <= tokens <= MAX_REPORTED_TOKENS
