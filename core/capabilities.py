"""What each model accepts: sampling parameters, the token-limit field, reasoning controls.

One table of model-name patterns per provider (first match wins, the last row of each
provider is its plain default), overridable per teacher in the config. A teacher says
`reasoning = "low" | "medium" | "high" | <budget tokens> | "off"` in one vocabulary for
all providers; `resolve_request_shape` turns that into what its provider takes:

- OpenAI o-series and GPT-5 family: `max_completion_tokens` (they refuse `max_tokens`),
  no `temperature` / `top_p`, `reasoning_effort` low | medium | high; a budget maps to
  the nearest effort. https://platform.openai.com/docs/guides/reasoning and
  https://platform.openai.com/docs/api-reference/chat/create (`max_tokens` "is not
  compatible with o-series models", `reasoning_effort`).
- Anthropic extended thinking (Claude 3.7 Sonnet, the Claude 4 family):
  `thinking: {type: enabled, budget_tokens}`, at least 1024 and below `max_tokens`,
  with `temperature` / `top_p` left at their defaults.
  https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
  Claude Opus 4.7, 4.8 and the Claude 5 generation: adaptive thinking only, `output_config.effort`
  low | medium | high (Claude 5 thinks unless told otherwise, so its default effort is always sent).
- Gemini 2.5: `generationConfig.thinkingConfig.thinkingBudget`; 0 turns thinking off on
  Flash and Flash-Lite, never on Pro (128..32768). Thoughts count against
  `maxOutputTokens`. https://ai.google.dev/gemini-api/docs/thinking

`max_tokens` stays the visible answer: where the API counts thinking in the same limit
(all three), the adapter adds the budget (`ChatRequest.output_limit`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import msgspec

from core.calls import ChatRequest, Message, ProviderName, Reasoning, TokenLimitField

if TYPE_CHECKING:
    from core.config import TeacherSection

Effort = Literal["low", "medium", "high"]
ReasoningControl = Literal["none", "effort", "budget"]
EFFORTS: tuple[Effort, ...] = ("low", "medium", "high")
# Sampling defaults of a model that accepts them and a teacher that sets none (the paper's).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 1.0


class Capability(msgspec.Struct, frozen=True, kw_only=True):
    """What one family of models accepts, and what its reasoning is expected to cost.

    `effort_budgets`: the thinking tokens "low", "medium", "high" stand for (a budget
    sent to budget providers; for effort providers the allowance added to the limit).
    `reasoning_estimate`: expected thinking tokens per call at each effort, for the
    dry-run forecast (our guess for short FAIR answers, not a provider figure).
    `default_reasoning`: what an unset `reasoning` means; it is sent explicitly, so that
    the thinking budget, and with it the worst case of a call, is known.
    """

    pattern: str
    sampling: bool = True
    token_field: TokenLimitField = "max_tokens"
    reasoning: ReasoningControl = "none"
    can_disable: bool = True
    min_budget: int = 0
    max_budget: int | None = None
    effort_budgets: tuple[int, int, int] = (0, 0, 0)
    reasoning_estimate: tuple[int, int, int] = (0, 0, 0)
    default_reasoning: Effort | Literal["off"] | None = None
    # Anthropic: thinking requires temperature and top_p at their defaults.
    sampling_with_thinking: bool = True
    # Most output tokens (thinking included) the model writes in one answer; None: not checked.
    max_output_tokens: int | None = None


_PLAIN = Capability(pattern="")
_GEMINI_FLASH = Capability(
    pattern=r"^gemini-2\.5-flash",
    reasoning="budget",
    min_budget=1,
    max_budget=24576,
    effort_budgets=(1024, 8192, 24576),
    reasoning_estimate=(500, 1500, 5000),
    default_reasoning="medium",
    max_output_tokens=65_536,
)
# Extended thinking (Claude 3.7 Sonnet, the Claude 4 family) is opt-in: off unless the teacher sets `reasoning`.
_CLAUDE_THINKING = Capability(
    pattern=r"^claude-(3-7-sonnet|(opus|sonnet|haiku)-4|4)",
    reasoning="budget",
    min_budget=1024,
    effort_budgets=(1024, 4096, 16384),
    reasoning_estimate=(700, 2000, 6000),
    default_reasoning="off",
    sampling_with_thinking=False,
    # Sonnet 3.7/4/4.5, Haiku 4.5, Opus 4.5.
    max_output_tokens=64_000,
)

CAPABILITIES: dict[str, tuple[Capability, ...]] = {
    "openai": (
        # o1, o3, o3-mini, o3-pro, o4-mini; OpenAI's default effort is medium.
        Capability(
            pattern=r"^o\d",
            sampling=False,
            token_field="max_completion_tokens",
            reasoning="effort",
            can_disable=False,
            effort_budgets=(4096, 16384, 32768),
            reasoning_estimate=(400, 1500, 5000),
            default_reasoning="medium",
            max_output_tokens=100_000,
        ),
        # gpt-5, gpt-5-mini, gpt-5-nano, gpt-5.1...; gpt-5-chat-latest is a plain chat model.
        Capability(
            pattern=r"^gpt-5(?!.*-chat)",
            sampling=False,
            token_field="max_completion_tokens",
            reasoning="effort",
            can_disable=False,
            effort_budgets=(4096, 16384, 32768),
            reasoning_estimate=(300, 1200, 4000),
            default_reasoning="medium",
            max_output_tokens=128_000,
        ),
        _PLAIN,
    ),
    "anthropic": (
        # Claude Opus 4.7 and 4.8 take only adaptive thinking (`thinking: {type: adaptive}`, its depth
        # by `output_config.effort`, bounded by max_tokens alone; `budget_tokens` is a 400) and no
        # temperature / top_p; thinking stays off unless asked. The allowance bounds the thinking as
        # OpenAI's effort does. https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html,
        # https://effloow.com/articles/claude-opus-4-7-developer-guide-2026; 128k output:
        # https://platform.claude.com/docs/en/models/opus-4-8/overview
        Capability(
            pattern=r"^claude-opus-4-[78]",
            sampling=False,
            reasoning="effort",
            effort_budgets=(4096, 16384, 32768),
            reasoning_estimate=(700, 2000, 6000),
            default_reasoning="off",
            max_output_tokens=128_000,
        ),
        # The Claude 5 generation (Opus 5 and 5.5, Sonnet, Haiku, Fable, Mythos 5) is adaptive too, and
        # thinks when `thinking` is unset (Opus 5.5 and Fable cannot turn it off at all), so its effort is
        # always sent and "off" refused. https://platform.claude.com/docs/en/models/opus-5/overview,
        # https://platform.claude.com/docs/zh-CN/models/opus-5-5/overview
        Capability(
            pattern=r"^claude-(opus|sonnet|haiku|fable|mythos)-5",
            sampling=False,
            reasoning="effort",
            can_disable=False,
            effort_budgets=(4096, 16384, 32768),
            reasoning_estimate=(700, 2000, 6000),
            default_reasoning="medium",
            max_output_tokens=128_000,
        ),
        # Output ceilings differ within the family: Opus 4 and 4.1 write at most 32000 tokens, the
        # 4.6 models 128000, the others 64000; the API refuses a max_tokens above them.
        # https://platform.claude.com/docs/en/about-claude/models/overview
        msgspec.structs.replace(
            _CLAUDE_THINKING, pattern=r"^claude-opus-4(-[01])?(-\d{8})?$", max_output_tokens=32_000
        ),
        msgspec.structs.replace(_CLAUDE_THINKING, pattern=r"^claude-(opus|sonnet)-4-6", max_output_tokens=128_000),
        _CLAUDE_THINKING,
        _PLAIN,
    ),
    "gemini": (
        Capability(
            pattern=r"^gemini-2\.5-pro",
            reasoning="budget",
            can_disable=False,
            min_budget=128,
            max_budget=32768,
            effort_budgets=(1024, 8192, 24576),
            reasoning_estimate=(600, 2000, 6000),
            default_reasoning="medium",
            max_output_tokens=65_536,
        ),
        # Flash-Lite does not think unless asked; its budgets start at 512.
        msgspec.structs.replace(
            _GEMINI_FLASH, pattern=r"^gemini-2\.5-flash-lite", min_budget=512, default_reasoning="off"
        ),
        _GEMINI_FLASH,
        _PLAIN,
    ),
}


def table_capability(provider: ProviderName, model: str) -> Capability:
    """The table's row for `model` (case-insensitive, Gemini's `models/` prefix ignored)."""
    name = model.strip().lower().removeprefix("models/")
    for row in CAPABILITIES[provider]:
        if re.search(row.pattern, name):
            return row
    return _PLAIN


def teacher_capability(teacher: TeacherSection) -> Capability:
    """The table's row for the teacher's model with the teacher's overrides applied."""
    row = table_capability(teacher.provider, teacher.model)
    changes: dict[str, object] = {}
    if teacher.accepts_sampling is not None:
        changes["sampling"] = teacher.accepts_sampling
    if teacher.max_tokens_field is not None:
        changes["token_field"] = teacher.max_tokens_field
    if teacher.reasoning_control is not None:
        changes["reasoning"] = teacher.reasoning_control
        if teacher.reasoning_control != row.reasoning:
            # A model the table does not know as reasoning: any effort or budget is the teacher's call.
            changes["can_disable"] = True
    if teacher.min_thinking_budget is not None:
        changes["min_budget"] = teacher.min_thinking_budget
    return msgspec.structs.replace(row, **changes) if changes else row


def _budget_effort(capability: Capability, budget: int) -> Effort:
    """The effort whose allowance is nearest to `budget` from above (OpenAI takes no budget)."""
    for effort, allowance in zip(EFFORTS, capability.effort_budgets, strict=True):
        if budget <= allowance:
            return effort
    return "high"


def resolve_reasoning(teacher: TeacherSection) -> Reasoning | None:
    """The teacher's `reasoning` as its provider takes it; None: none sent.

    Raises ValueError naming the key and the fix when the model takes no such setting:
    a reasoning setting on a model without one, a budget below the provider's minimum or
    above its maximum, "off" where thinking cannot be turned off.
    """
    cap = teacher_capability(teacher)
    setting = teacher.reasoning if teacher.reasoning is not None else cap.default_reasoning
    if cap.reasoning == "none":
        if teacher.reasoning is not None:
            raise ValueError(
                f"`reasoning` = {teacher.reasoning!r}: model {teacher.model!r} takes no reasoning setting; "
                "remove `reasoning` (or set `reasoning_control` if this model does reason)"
            )
        return None
    if setting is None:
        return None
    if setting == "off":
        if not cap.can_disable:
            raise ValueError(
                f"`reasoning` = 'off': model {teacher.model!r} cannot turn its reasoning off; "
                "use 'low' or the smallest budget it takes"
            )
        # Gemini turns thinking off with a zero budget; the others by sending nothing. A model that is
        # off by default (Flash-Lite) gets nothing either: the request, and its content key, stays the
        # one older runs stored, so a rerun buys nothing twice.
        explicit = teacher.reasoning is not None and teacher.provider == "gemini"
        return Reasoning(budget_tokens=0) if explicit else None
    if isinstance(setting, str):
        budget = cap.effort_budgets[EFFORTS.index(setting)]
    else:
        budget = setting
        if budget < max(cap.min_budget, 1):
            raise ValueError(
                f"`reasoning` = {budget}: below the minimum thinking budget of model {teacher.model!r} "
                f"({max(cap.min_budget, 1)} tokens); raise it or use 'low'"
            )
        if cap.max_budget is not None and budget > cap.max_budget:
            raise ValueError(
                f"`reasoning` = {budget}: above the maximum thinking budget of model {teacher.model!r} "
                f"({cap.max_budget} tokens); lower it or use 'high'"
            )
    if cap.reasoning == "effort":
        effort = setting if isinstance(setting, str) else _budget_effort(cap, budget)
        return Reasoning(effort=effort, budget_tokens=cap.effort_budgets[EFFORTS.index(effort)])
    return Reasoning(budget_tokens=budget)


def check_teacher(teacher: TeacherSection) -> None:
    """Everything about a teacher's request shape that can be known before a call; ValueError naming the key.

    Beyond `resolve_reasoning`: `temperature` / `top_p` other than 1 on a model that refuses
    them (o-series, GPT-5, Claude while thinking), and a thinking budget that leaves
    `max_tokens` no room under the model's output limit.
    """
    cap = teacher_capability(teacher)
    reasoning = resolve_reasoning(teacher)
    estimate = teacher.reasoning_tokens_estimate
    if estimate is not None and estimate < 0:
        raise ValueError(f"`reasoning_tokens_estimate` = {estimate}: a count of tokens; set it to 0 or more")
    if not _takes_sampling(cap, reasoning):
        why = "while it thinks (extended thinking)" if cap.sampling else "(a reasoning model)"
        for key in ("temperature", "top_p"):
            value = getattr(teacher, key)
            # 1 is these models' fixed default, which the APIs accept.
            if value is not None and value != 1.0:
                raise ValueError(f"`{key}` = {value}: model {teacher.model!r} refuses it {why}; remove `{key}`")
    limit = cap.max_output_tokens
    if reasoning is not None and limit is not None and reasoning.budget_tokens + teacher.max_tokens > limit:
        raise ValueError(
            f"`reasoning`: a thinking budget of {reasoning.budget_tokens} tokens on top of `max_tokens` "
            f"{teacher.max_tokens} passes the {limit} output tokens model {teacher.model!r} "
            "can write; lower the budget or max_tokens"
        )


def _takes_sampling(cap: Capability, reasoning: Reasoning | None) -> bool:
    thinking = reasoning is not None and reasoning.budget_tokens > 0
    return cap.sampling and (cap.sampling_with_thinking or not thinking)


def teacher_request(teacher: TeacherSection, messages: tuple[Message, ...]) -> ChatRequest:
    """The request a teacher sends for `messages`: its sampling where the model takes it, its reasoning."""
    cap = teacher_capability(teacher)
    reasoning = resolve_reasoning(teacher)
    sampling = _takes_sampling(cap, reasoning)
    return ChatRequest(
        model=teacher.model,
        messages=messages,
        temperature=(teacher.temperature if teacher.temperature is not None else DEFAULT_TEMPERATURE)
        if sampling
        else None,
        top_p=(teacher.top_p if teacher.top_p is not None else DEFAULT_TOP_P) if sampling else None,
        max_tokens=teacher.max_tokens,
        token_field=cap.token_field,
        reasoning=reasoning,
    )


def reasoning_tokens_estimate(teacher: TeacherSection) -> int:
    """Expected thinking tokens per call, for the dry run: the teacher's `reasoning_tokens_estimate`,
    else the table's figure for its effort (a budget counts as the effort it is nearest to)."""
    if teacher.reasoning_tokens_estimate is not None:
        return teacher.reasoning_tokens_estimate
    cap = teacher_capability(teacher)
    reasoning = resolve_reasoning(teacher)
    if reasoning is None or reasoning.budget_tokens == 0:
        return 0
    effort = reasoning.effort or _budget_effort(cap, reasoning.budget_tokens)
    return min(cap.reasoning_estimate[EFFORTS.index(effort)], reasoning.budget_tokens)
