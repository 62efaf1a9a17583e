"""What an emulated provider does: limits per model, latency, faults and answers.

An `EmulatorSpec` is plain data, so it travels as JSON to `python -m emulator
--spec FILE` and back from `GET /_emulator/stats`'s neighbour `POST /_emulator/reset`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec


# Subclasses inherit these options at run time; they restate frozen=True for type checkers,
# which read dataclass_transform (PEP 681) as not inheriting it.
class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ModelLimits(_Spec, frozen=True):
    """Per-model limits, enforced like a provider: one token bucket per dimension.

    Each per-minute bucket refills at limit/60 per second and holds `limit * burst_s / 60`
    (at least one request); the per-day one holds a day's requests. `None` means unlimited.
    """

    rpm: float | None = None
    tpm: float | None = None
    burst_s: float = 1.0
    # False: TPM is charged prompt + max_tokens at admission and never refunded. Azure
    # OpenAI "TPM rate limits are based on the maximum number of tokens that are estimated
    # to be processed by a request at the time the request is received":
    # https://learn.microsoft.com/en-us/azure/ai-services/openai/how-to/quota
    refund_unused_tokens: bool = True
    # Anthropic's separate input and output token limits: ITPM charges the prompt, OTPM
    # max_tokens at admission, adjusted to the real output at the end, each reported in
    # anthropic-ratelimit-{input,output}-tokens-* headers:
    # https://docs.anthropic.com/en/api/rate-limits
    itpm: float | None = None
    otpm: float | None = None
    # Requests per day. Groq reports it, not RPM, in x-ratelimit-limit-requests (and the
    # TPM in x-ratelimit-limit-tokens): https://console.groq.com/docs/rate-limits
    rpd: float | None = None
    # Azure OpenAI reports only x-ratelimit-remaining-{requests,tokens}, and resets in plain
    # seconds: https://learn.microsoft.com/en-us/azure/ai-services/openai/quotas-limits
    # Together counts per second: x-ratelimit-{limit,remaining,reset} for requests and
    # x-tokenlimit-{limit,remaining} for tokens, each "per sec", a per-minute limit
    # enforced as limit/60 per second (https://docs.together.ai/docs/rate-limits).
    header_dialect: Literal["openai", "groq", "azure", "together"] = "openai"
    # Billed requests the account can pay for; then every request to this model gets the
    # provider's out-of-quota answer (see wire.py's `quota_error`).
    quota_requests: int | None = None

    def __post_init__(self) -> None:
        for key in ("rpm", "tpm", "itpm", "otpm", "rpd"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"`{key}` must be > 0, got {value}")
        if self.burst_s <= 0:
            raise ValueError(f"`burst_s` must be > 0, got {self.burst_s}")
        if self.quota_requests is not None and self.quota_requests < 0:
            raise ValueError(f"`quota_requests` must be >= 0, got {self.quota_requests}")

    def is_limited(self) -> bool:
        """Whether any bucket applies."""
        return any((self.rpm, self.tpm, self.itpm, self.otpm, self.rpd))


class Latency(_Spec, frozen=True):
    """Time to answer: lognormal(median_ms, sigma) (fixed when sigma is 0) plus a per-output-token time."""

    median_ms: float = 0.0
    sigma: float = 0.0
    ms_per_output_token: float = 0.0


class Faults(_Spec, frozen=True):
    """Probabilities per admitted request; at most one fault per request.

    The answers without usable text (`empty`, `filtered`, `refusal`, `truncated`,
    `malformed`) are billed only with `Billing.unusable`; `error`, `error_200` and
    `reset` never are; `no_usage` is a proper answer, billed, that hides its usage.
    """

    error_rate: float = 0.0  # 500/503 (Anthropic: 500/529) with a provider-shaped error body
    reset_rate: float = 0.0  # connection closed abruptly (RST) without a response
    hang_rate: float = 0.0  # sleep hang_s before answering: past any client timeout
    hang_s: float = 3600.0
    malformed_rate: float = 0.0  # 200 with a truncated, non-JSON body
    empty_rate: float = 0.0  # 200 with empty content
    filtered_rate: float = 0.0  # content filter: OpenAI finish_reason content_filter, Gemini SAFETY, no text
    refusal_rate: float = 0.0  # Anthropic stop_reason refusal; OpenAI message.refusal with content null
    truncated_rate: float = 0.0  # thinking ate max_tokens: finish length / MAX_TOKENS / max_tokens, no text
    error_200_rate: float = 0.0  # a 200 whose body is an error object (some OpenAI-compatible hosts)
    no_usage_rate: float = 0.0  # a 200 answer without its usage object

    def rates(self) -> tuple[float, ...]:
        """The fault rates, in the order `FAULT_KINDS` names them."""
        return tuple(getattr(self, f"{kind}_rate") for kind in FAULT_KINDS)

    def __post_init__(self) -> None:
        rates = self.rates()
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {rates}")


FAULT_KINDS = (
    "error",
    "reset",
    "hang",
    "malformed",
    "empty",
    "filtered",
    "refusal",
    "truncated",
    "error_200",
    "no_usage",
)


class Billing(_Spec, frozen=True):
    """What the account is charged for besides proper answers (all free by default: the ideal provider).

    OpenAI, Anthropic and Gemini run a request to completion once the model started,
    whether or not the client is still there, and bill every answer the model produced,
    usable or not (Anthropic: "You will be billed for output tokens up until the refusal",
    https://docs.anthropic.com/en/docs/test-and-evaluate/strengthen-guardrails/handle-streaming-refusals).
    """

    # A request whose client went away (timeout, disconnect) after admission is billed
    # prompt + the output the answer would have had. A `reset` fault is the server's
    # doing and never billed.
    abandoned: bool = False
    # Answers without usable text (empty, filtered, refused, truncated, malformed) are billed.
    unusable: bool = False


class Overload(_Spec, frozen=True):
    """A burst of overload: from `start_s` to `start_s + duration_s` after the emulator started
    (or was reset), a `rate` share of requests is refused with the provider's overload answer."""

    start_s: float
    duration_s: float
    rate: float = 1.0

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.duration_s <= 0 or not 0 < self.rate <= 1:
            raise ValueError(
                f"an overload needs start_s >= 0, duration_s > 0 and 0 < rate <= 1, got "
                f"{self.start_s}, {self.duration_s}, {self.rate}"
            )


class BatchBehaviour(_Spec, frozen=True):
    """How the emulated Batch APIs (OpenAI batches, Anthropic message batches, Gemini batch mode) behave.

    Driven by the emulator's clock: a batch validates for `validate_s`, then its requests
    finish one after another, evenly spread over `delay_s`, each answered like a sync request
    and billed then (at half price: `ModelStats.batch_*`). A batch still running
    `expire_after_s` after creation expires: its unfinished requests come back expired and
    are never billed; a cancelled batch ends `cancel_s` after the cancel, its unfinished
    requests cancelled. `error_share` of the requests come back as provider-shaped server
    errors (not billed). `max_requests` / `max_bytes` override the provider's own limits
    (None: the provider's, see emulator/batches.py); `max_in_flight` caps the unfinished
    batches per provider (None: no cap).
    """

    delay_s: float = 1.0
    validate_s: float = 0.0
    error_share: float = 0.0
    expire_after_s: float = 24 * 3600.0
    cancel_s: float = 0.0
    max_in_flight: int | None = None
    max_requests: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for key in ("delay_s", "validate_s", "cancel_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"`batch.{key}` must be >= 0, got {getattr(self, key)}")
        if self.expire_after_s <= 0:
            raise ValueError(f"`batch.expire_after_s` must be > 0, got {self.expire_after_s}")
        if not 0 <= self.error_share <= 1:
            raise ValueError(f"`batch.error_share` must be in [0, 1], got {self.error_share}")
        for key in ("max_in_flight", "max_requests", "max_bytes"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"`batch.{key}` must be >= 1, got {value}")


class EmulatorSpec(_Spec, frozen=True):
    """The whole emulated provider. A model not listed in `models` gets `default_limits`."""

    models: dict[str, ModelLimits] = {}
    default_limits: ModelLimits = msgspec.field(default_factory=ModelLimits)
    latency: Latency = msgspec.field(default_factory=Latency)
    faults: Faults = msgspec.field(default_factory=Faults)
    billing: Billing = msgspec.field(default_factory=Billing)
    overloads: list[Overload] = []
    # "echo" | path to a JSONL of canned answers | "module:function" returning an AnswerFn's text
    answers: str = "echo"
    seed: int = 0
    # Echo answers this many tokens long when set (before max_tokens truncation).
    output_tokens: int | None = None
    # Tokens a reasoning model thinks per answer at medium effort (emulator/reasoning.py).
    thinking_tokens: int = 400
    batch: BatchBehaviour = msgspec.field(default_factory=BatchBehaviour)

    def limits_for(self, model: str) -> ModelLimits:
        """The limits `model` is held to."""
        return self.models.get(model, self.default_limits)


class AnswerRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What an answer function sees of one request, the same for every provider."""

    provider: str
    model: str
    messages: list[tuple[str, str]]  # (role, text); system messages included, roles user/assistant/system
    max_tokens: int
    temperature: float
    top_p: float = 1.0
    # A reasoning model (emulator/reasoning.py): it thinks, at `effort`, within `thinking_budget`
    # (None: no budget of its own); `max_tokens` then covers thinking and answer together.
    thinks: bool = False
    effort: str | None = None
    thinking_budget: int | None = None
    # Anthropic: the prompt up to its last cache_control breakpoint, and that prefix's tokens.
    cache_breakpoint: tuple[str, int] | None = None
    # The request asked for a structured review score (OpenAI response_format json_schema,
    # Gemini responseSchema, Anthropic a forced tool, named in `tool_name`).
    structured: bool = False
    tool_name: str | None = None

    def last_user_text(self) -> str:
        """The text of the last user message ("" when there is none)."""
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""


AnswerFn = Callable[[AnswerRequest], str]
