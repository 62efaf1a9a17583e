"""Anthropic Messages on the wire (`POST /v1/messages`, `x-api-key`, `anthropic-version`).

API reference: https://docs.anthropic.com/en/api/messages
`base_url` is the host only, as in the official SDK: `https://api.anthropic.com`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from adapters.classify import chat_result, decode_success, no_text
from core.calls import (
    REVIEW_SCORE_JSON_SCHEMA,
    ZERO_TOKENS,
    ChatRequest,
    ChatResult,
    Message,
    UsageDetail,
    reported_tokens,
)
from core.errors import Unusable

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class Thinking(msgspec.Struct, omit_defaults=True):
    """Extended thinking (`enabled`, with a budget): https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking;
    or adaptive (no budget, depth by `OutputConfig.effort`): https://platform.claude.com/docs/en/build-with-claude/adaptive-thinking
    """

    type: str
    budget_tokens: int | None = None


class OutputConfig(msgspec.Struct):
    """`effort`: low | medium | high, adaptive thinking's depth: https://platform.claude.com/docs/en/build-with-claude/effort"""

    effort: str


class _CacheControl(msgspec.Struct):
    type: str = "ephemeral"


class _TextBlock(msgspec.Struct, omit_defaults=True):
    type: str
    text: str
    cache_control: _CacheControl | None = None


class _BlockMessage(msgspec.Struct):
    """A message whose content is a list of blocks: how a cache breakpoint is placed."""

    role: str
    content: list[_TextBlock]


class _Tool(msgspec.Struct):
    name: str
    description: str
    input_schema: dict[str, object]


class _ToolChoice(msgspec.Struct):
    name: str
    type: str = "tool"


class MessagesRequest(msgspec.Struct, omit_defaults=True):
    """The request body. System messages go to the top-level `system`."""

    model: str
    messages: list[Message | _BlockMessage]
    # Thinking included: `budget_tokens` must stay below it.
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    tool_choice: _ToolChoice | None = None
    tools: list[_Tool] | None = None
    # Left out at its default 1.0: recent Claude models reject temperature and top_p together.
    top_p: float | None = None


class _ContentBlock(msgspec.Struct):
    # `thinking` and `redacted_thinking` blocks come before the answer; only `text` is the answer.
    type: str
    text: str = ""
    # A tool_use block's arguments, kept as sent: a structured review score's JSON.
    input: msgspec.Raw = msgspec.Raw(b"")


class _Usage(msgspec.Struct):
    # Raw, read by `reported_tokens`: a garbled figure must not cost us the answer.
    input_tokens: msgspec.Raw = ZERO_TOKENS
    output_tokens: msgspec.Raw = ZERO_TOKENS
    # null when no cache was involved.
    cache_creation_input_tokens: msgspec.Raw = ZERO_TOKENS
    cache_read_input_tokens: msgspec.Raw = ZERO_TOKENS


class MessagesResponse(msgspec.Struct):
    """A view of the response: only the fields we read; unknown fields are skipped."""

    content: list[_ContentBlock]
    stop_reason: str | None = None
    usage: _Usage | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MessagesResponse)


def request_body(request: ChatRequest) -> MessagesRequest:
    """The body for `request`: adaptive thinking when it has an effort, else extended thinking when it
    has a budget; either way the thinking counts in `max_tokens`, so the visible answer keeps all of
    `request.max_tokens` and the budget (or the effort's allowance) comes on top."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    reasoning = request.reasoning
    thinking = output_config = None
    if reasoning is not None and reasoning.effort is not None:
        thinking, output_config = Thinking(type="adaptive"), OutputConfig(effort=reasoning.effort)
    elif reasoning is not None and reasoning.budget_tokens:
        thinking = Thinking(type="enabled", budget_tokens=reasoning.budget_tokens)
    return MessagesRequest(
        model=request.model,
        messages=_with_cache_breakpoint(
            [m for m in request.messages if m.role != "system"], request.cache_prefix_chars
        ),
        max_tokens=request.output_limit,
        system=system or None,
        temperature=request.temperature,
        thinking=thinking,
        output_config=output_config,
        tool_choice=_ToolChoice(name=SCORE_TOOL) if request.structured_score else None,
        tools=[_score_tool()] if request.structured_score else None,
        top_p=request.top_p if request.top_p != 1.0 else None,
    )


# The tool a structured review score is "called" with; forcing it makes its input the answer.
SCORE_TOOL = "record_review_score"
# Shortest prefix each model caches, in tokens; a shorter one marked with cache_control is
# processed without caching. "Cache limitations" table of
# https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching (first match wins).
_MIN_CACHEABLE_TOKENS = (
    ("claude-opus-4-5", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 2048),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
DEFAULT_MIN_CACHEABLE_TOKENS = 1024


def min_cacheable_tokens(model: str) -> int:
    """The shortest prompt prefix `model` caches (1024 for most Claude models, 2048 or 4096 for some)."""
    for prefix, tokens in _MIN_CACHEABLE_TOKENS:
        if model.startswith(prefix):
            return tokens
    return DEFAULT_MIN_CACHEABLE_TOKENS


def encode(request: ChatRequest) -> bytes:
    """The JSON body for `request`; several system messages are joined by blank lines."""
    return _encoder.encode(request_body(request))


def _thinking_tokens(response: MessagesResponse, text: str, output_tokens: int | None) -> int:
    """Thinking tokens of an answer, estimated: Anthropic bills them inside `output_tokens` and reports
    no split (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking, "Pricing"), and
    Claude 4 returns a summary, not the billed thinking. So: output minus the visible text at ~4
    characters a token, when a thinking block came back."""
    if output_tokens is None or not any(b.type in ("thinking", "redacted_thinking") for b in response.content):
        return 0
    return max(0, output_tokens - -(-len(text) // 4))


def _score_tool() -> _Tool:
    """A review score as a forced tool call: its input is the `ReviewScore`
    (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#forcing-tool-use)."""
    return _Tool(
        name=SCORE_TOOL,
        description="Record your review of the rationale: a brief reasoning, then the score from 1 to 5.",
        input_schema=REVIEW_SCORE_JSON_SCHEMA,
    )


def _with_cache_breakpoint(messages: list[Message], prefix_chars: int) -> list[Message | _BlockMessage]:
    """`messages`, the last one split after its first `prefix_chars` characters with a cache breakpoint there.

    The prefix (and the system prompt before it) is cached for the calls that repeat it;
    the two text blocks read as the one message they were.
    """
    if prefix_chars <= 0 or not messages or prefix_chars >= len(messages[-1].content):
        return list(messages)
    last = messages[-1]
    blocks = [
        _TextBlock("text", last.content[:prefix_chars], cache_control=_CacheControl()),
        _TextBlock("text", last.content[prefix_chars:]),
    ]
    return [*messages[:-1], _BlockMessage(role=last.role, content=blocks)]


def url(base_url: str, model: str) -> str:
    """`{base_url}/v1/messages`; the model travels in the body."""
    return base_url.rstrip("/") + "/v1/messages"


def headers(api_key: str) -> dict[str, str]:
    """Request headers; they hold the key, so never log them."""
    return {"x-api-key": api_key, "anthropic-version": API_VERSION, "Content-Type": "application/json"}


def decode(status: int, headers: Mapping[str, str], body: bytes, latency_s: float) -> ChatResult:
    """The result of one response.

    Raises `Retryable` for 408/409/429/5xx (529 overloaded included) and for a 2xx with
    an unreadable body; `AccountError` for a credit balance too low or a refused key;
    `Permanent` for other 4xx; `Unusable` (with the billed usage) for a 2xx without
    text: `stop_reason: refusal`, max_tokens reached before any text, or empty.
    """
    response = decode_success(status, headers, body, _decoder)
    stop_reason = response.stop_reason or "end_turn"
    text = "".join(block.text for block in response.content if block.type == "text")
    tool_inputs = [bytes(b.input) for b in response.content if b.type == "tool_use" and bytes(b.input)]
    if tool_inputs:
        # A structured review score: the forced tool's input is the answer.
        text = tool_inputs[-1].decode()
    usage = response.usage
    input_tokens = output_tokens = None
    detail = None
    if usage is not None:
        # Cached prompt tokens are reported apart, not inside input_tokens; the prompt is all three together.
        # https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance
        parts = (
            reported_tokens(usage.input_tokens),
            reported_tokens(usage.cache_creation_input_tokens, null=0),
            reported_tokens(usage.cache_read_input_tokens, null=0),
        )
        input_tokens = None if None in parts else sum(parts)  # type: ignore[arg-type]
        output_tokens = reported_tokens(usage.output_tokens)
        detail = UsageDetail(
            reasoning_tokens=_thinking_tokens(response, text, output_tokens),
            cache_write_tokens=parts[1] or 0,
            cache_read_tokens=parts[2] or 0,
        )
    unusable = None
    if stop_reason == "refusal":
        unusable = Unusable("refused", "model refused (stop_reason=refusal)", http_status=status)
    else:
        unusable = no_text(text, stop_reason, field="stop_reason", truncated_by="max_tokens", status=status)
    return chat_result(
        text,
        stop_reason,
        input_tokens,
        output_tokens,
        unusable,
        status=status,
        headers=headers,
        latency_s=latency_s,
        detail=detail,
    )
