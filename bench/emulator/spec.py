"""What an emulated provider does: limits per model, latency, faults and answers.

An `EmulatorSpec` is plain data, so it travels as JSON to `python -m bench.emulator
--spec FILE` and back from `GET /_emulator/stats`'s neighbour `POST /_emulator/reset`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ModelLimits(_Spec):
    """Per-model limits, enforced like a provider: one token bucket per dimension.

    Each bucket refills at limit/60 per second and holds `limit * burst_s / 60`
    (at least one request). `None` means unlimited.
    """

    rpm: float | None = None
    tpm: float | None = None
    burst_s: float = 1.0

    def __post_init__(self) -> None:
        for key in ("rpm", "tpm"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"`{key}` must be > 0, got {value}")
        if self.burst_s <= 0:
            raise ValueError(f"`burst_s` must be > 0, got {self.burst_s}")


class Latency(_Spec):
    """Time to answer: lognormal(median_ms, sigma) (fixed when sigma is 0) plus a per-output-token time."""

    median_ms: float = 0.0
    sigma: float = 0.0
    ms_per_output_token: float = 0.0


class Faults(_Spec):
    """Probabilities per admitted request; at most one fault per request."""

    error_rate: float = 0.0  # 500/503 (Anthropic: 500/529) with a provider-shaped error body
    reset_rate: float = 0.0  # connection closed abruptly (RST) without a response
    hang_rate: float = 0.0  # sleep hang_s before answering: past any client timeout
    hang_s: float = 3600.0
    malformed_rate: float = 0.0  # 200 with a truncated, non-JSON body
    empty_rate: float = 0.0  # 200 with empty content

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.reset_rate, self.hang_rate, self.malformed_rate, self.empty_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {rates}")


class EmulatorSpec(_Spec):
    """The whole emulated provider. A model not listed in `models` gets `default_limits`."""

    models: dict[str, ModelLimits] = {}
    default_limits: ModelLimits = msgspec.field(default_factory=ModelLimits)
    latency: Latency = msgspec.field(default_factory=Latency)
    faults: Faults = msgspec.field(default_factory=Faults)
    # "echo" | path to a JSONL of canned answers | "module:function" returning an AnswerFn's text
    answers: str = "echo"
    seed: int = 0
    # Echo answers this many tokens long when set (before max_tokens truncation).
    output_tokens: int | None = None

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

    def last_user_text(self) -> str:
        """The text of the last user message ("" when there is none)."""
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""


AnswerFn = Callable[[AnswerRequest], str]
