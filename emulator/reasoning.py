"""Reasoning models as the providers run them: which parameters they refuse, and how long they think.

Model names decide, as at the providers (kept apart from core/capabilities.py on purpose: a
test double that reused the client's table would agree with the client's mistakes):

- OpenAI o-series and GPT-5 family (not gpt-5-chat): `max_tokens` refused for
  `max_completion_tokens`, `temperature` / `top_p` other than 1 refused, `reasoning_effort`
  low | medium | high (default medium); reasoning tokens count against
  `max_completion_tokens` and are billed as completion tokens
  (https://platform.openai.com/docs/guides/reasoning). Other models refuse `reasoning_effort`.
- Anthropic Claude 3.7 Sonnet and the Claude 4 family think only when asked
  (`thinking: {type: enabled, budget_tokens}`), with `budget_tokens` >= 1024 and below
  `max_tokens`, `temperature` 1 or unset, `top_p` unset or >= 0.95
  (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking). Older models
  refuse `thinking`. Claude Opus 4.7 and 4.8 take only adaptive thinking
  (`thinking: {type: adaptive}`, depth by `output_config.effort`, bounded by `max_tokens`
  alone) and refuse `type: enabled` with the error text below and any `temperature` /
  `top_p` (sampling parameters were removed):
  https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html,
  https://effloow.com/articles/claude-opus-4-7-developer-guide-2026; Opus 4.6 and Sonnet 4.6
  take both kinds. The Claude 5 generation (Opus 5 and 5.5, Sonnet, Haiku, Fable, Mythos 5)
  thinks adaptively even when `thinking` is unset and refuses `type: enabled`
  (https://platform.claude.com/docs/en/models/opus-5/overview: "thinking on by default";
  https://platform.claude.com/docs/zh-CN/models/opus-5-5/overview: Opus 5.5 cannot disable it),
  writing up to 128k tokens.
- Gemini 2.5 thinks by default (dynamic budget; Flash-Lite only when given one);
  `thinkingConfig.thinkingBudget` caps it, 0 turns it off on Flash and Flash-Lite and is refused
  by Pro (128..32768; Flash 0..24576, Flash-Lite 0 or 512..24576):
  https://ai.google.dev/gemini-api/docs/thinking. Thoughts count against `maxOutputTokens`.
  Older models refuse a thinking config.

The error texts are the providers' own where they are on record (OpenAI's two, Anthropic's
budget minimum, Gemini's "Budget 0 is invalid"), paraphrased otherwise.
"""

from __future__ import annotations

import re

# A reasoning model thinks this many tokens per answer at medium effort (or when its budget is
# larger); low is half, high twice. `EmulatorSpec.thinking_tokens` overrides it.
EFFORT_SCALE = {"minimal": 0.1, "low": 0.5, "medium": 1.0, "high": 2.0}

_OPENAI_REASONING = re.compile(r"^o\d|^gpt-5(?!.*-chat)")
_ANTHROPIC_THINKING = re.compile(r"^claude-(3-7-sonnet|(opus|sonnet|haiku)-4|4)")
_CLAUDE_5 = r"(opus|sonnet|haiku|fable|mythos)-5"
_ANTHROPIC_ADAPTIVE = re.compile(rf"^claude-(opus-4-[678]|sonnet-4-6|{_CLAUDE_5})")
_ANTHROPIC_ADAPTIVE_ONLY = re.compile(rf"^claude-(opus-4-[78]|{_CLAUDE_5})")
# Opus 4.7 and 4.8 refuse sampling parameters.
_ANTHROPIC_NO_SAMPLING = re.compile(r"^claude-opus-4-[78]")
# The Claude 5 generation thinks (adaptively, at its default effort) when `thinking` is unset.
_ANTHROPIC_THINKS_BY_DEFAULT = re.compile(rf"^claude-{_CLAUDE_5}")
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# Most output tokens (thinking included) a Claude model writes, first match wins; others: unchecked.
# https://platform.claude.com/docs/en/about-claude/models/overview (Opus 4 and 4.1: 32k; the 4.6
# and later models 128k: https://platform.claude.com/docs/en/models/opus-4-8/overview).
_ANTHROPIC_MAX_OUTPUT = (
    (re.compile(r"^claude-opus-4(-[01])?(-\d{8})?$"), 32_000),
    (re.compile(rf"^claude-(opus-4-[678]|sonnet-4-6|{_CLAUDE_5})"), 128_000),
    (re.compile(r"^claude-(3-7-sonnet|(opus|sonnet|haiku)-4)"), 64_000),
)
_GEMINI_THINKING = re.compile(r"^gemini-2\.5")
ANTHROPIC_MIN_BUDGET = 1024


class Rejected(Exception):
    """A request the provider refuses with 400 before running the model: `message` is its text."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def openai_reasoning(model: str) -> bool:
    """Whether an OpenAI model name is a reasoning model (o-series, GPT-5 family)."""
    return bool(_OPENAI_REASONING.search(model.lower()))


def check_openai(
    model: str, max_tokens: int | None, temperature: float | None, top_p: float | None, effort: str | None
) -> None:
    """Raise `Rejected` as OpenAI does for a request these parameters would make."""
    if not openai_reasoning(model):
        if effort is not None:
            raise Rejected(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "reasoning_effort",
                "unsupported_parameter",
            )
        return
    if max_tokens is not None:
        # https://github.com/griptape-ai/ComfyUI-Griptape/issues/312 quotes the whole error body.
        raise Rejected(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and value != 1:
            # https://github.com/BeehiveInnovations/pal-mcp-server/issues/78 quotes it for o3.
            raise Rejected(
                f"Unsupported value: '{name}' does not support {value:g} with this model. "
                "Only the default (1) value is supported.",
                name,
                "unsupported_value",
            )
    if effort is not None and effort not in EFFORT_SCALE:
        raise Rejected(
            f"Invalid value: '{effort}'. Supported values are: 'low', 'medium', and 'high'.",
            "reasoning_effort",
            "invalid_value",
        )


def check_anthropic(
    model: str,
    max_tokens: int,
    budget: int | None,
    temperature: float | None,
    top_p: float | None,
    *,
    adaptive: bool = False,
    effort: str | None = None,
    forced_tool: bool = False,
) -> None:
    """Raise `Rejected` as Anthropic does for thinking it cannot run (`budget` None and not `adaptive`: not asked),
    and for a `max_tokens` above what the model can write."""
    name = model.lower()
    ceiling = next((tokens for pattern, tokens in _ANTHROPIC_MAX_OUTPUT if pattern.search(name)), None)
    if ceiling is not None and max_tokens > ceiling:
        # Quoted in https://github.com/Effect-TS/effect/pull/7129.
        raise Rejected(
            f"max_tokens: {max_tokens} > {ceiling}, which is the maximum allowed number of output tokens for {model}"
        )
    if _ANTHROPIC_NO_SAMPLING.search(name):
        for param, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None:
                raise Rejected(f"`{param}` is not supported for this model.")
    if _ANTHROPIC_ADAPTIVE_ONLY.search(name) and budget is not None:
        # Quoted in https://github.com/anomalyco/opencode/issues/22863 (a 400 invalid_request_error).
        raise Rejected(
            '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
            '"output_config.effort" to control thinking behavior.'
        )
    if forced_tool:
        # "Thinking isn't compatible with ... forced tool use": tool_choice any/tool prefills the
        # answer, leaving no room for a thinking block
        # (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility).
        # The text is paraphrased: the real one is not on record.
        raise Rejected("Thinking may not be enabled when tool_choice forces tool use.")
    if effort is not None and effort not in ANTHROPIC_EFFORTS:
        raise Rejected(f"output_config.effort: Input should be {', '.join(repr(e) for e in ANTHROPIC_EFFORTS)}")
    if adaptive:
        if not _ANTHROPIC_ADAPTIVE.search(name):
            raise Rejected(f"adaptive thinking is not supported on '{model}'.")
        return
    if budget is None:
        return
    if not _ANTHROPIC_THINKING.search(name):
        raise Rejected(f"'{model}' does not support thinking.")
    if budget < ANTHROPIC_MIN_BUDGET:
        # https://github.com/themaximalist/llm.js/issues/30 quotes it.
        raise Rejected(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {ANTHROPIC_MIN_BUDGET}"
        )
    if budget >= max_tokens:
        raise Rejected("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if temperature is not None and temperature != 1:
        raise Rejected("`temperature` may only be set to 1 when thinking is enabled.")
    if top_p is not None and top_p < 0.95:
        raise Rejected("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.")


def anthropic_thinks_by_default(model: str) -> bool:
    """Whether a Claude model thinks when the request sets no `thinking` (the Claude 5 generation)."""
    return bool(_ANTHROPIC_THINKS_BY_DEFAULT.search(model.lower()))


def gemini_thinks(model: str) -> bool:
    """Whether a Gemini model thinks (the 2.5 family)."""
    return bool(_GEMINI_THINKING.search(model.lower()))


def gemini_thinking_on(model: str, budget: int | None) -> bool:
    """Whether a Gemini request thinks: a budget of 0 turns it off; unset, Flash-Lite does not think
    (its default, https://ai.google.dev/gemini-api/docs/thinking, quoted in
    https://github.com/cline/cline/issues/7735) and the others think dynamically."""
    if not gemini_thinks(model) or budget == 0:
        return False
    return budget is not None or "lite" not in model.lower()


def check_gemini(model: str, budget: int | None) -> None:
    """Raise `Rejected` as Gemini does for a thinking budget the model does not take (None: not set)."""
    if budget is None or budget == -1:
        return
    name = model.lower()
    if not gemini_thinks(name):
        raise Rejected(f"Thinking is not supported by models/{model}.")
    if "pro" in name:
        low, high = 128, 32768
        if budget == 0:
            # https://github.com/vercel/ai/issues/8027
            raise Rejected("Budget 0 is invalid. This model only works in thinking mode.")
    else:
        low, high = (512, 24576) if "lite" in name else (1, 24576)
    if budget != 0 and not low <= budget <= high:
        raise Rejected(f"The thinking budget {budget} is invalid. Please choose a value between {low} and {high}.")


def thinking_tokens(thinks: bool, effort: str | None, budget: int | None, medium_tokens: int) -> int:
    """Tokens the model thinks before answering: its effort's share of `medium_tokens`, capped by a budget."""
    if not thinks:
        return 0
    wanted = round(medium_tokens * EFFORT_SCALE.get(effort or "medium", 1.0))
    return wanted if budget is None else min(wanted, budget)
