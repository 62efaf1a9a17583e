"""OpenAI chat completions on the wire; also DeepInfra, Together, Groq, vLLM and llama.cpp servers.

API reference: https://platform.openai.com/docs/api-reference/chat/create
`base_url` includes the version path, as in the official SDK: `https://api.openai.com/v1`,
`http://127.0.0.1:8000/v1` for a local `vllm serve`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from adapters.classify import chat_result, decode_success, no_text, shorten
from core.calls import (
    REVIEW_SCORE_JSON_SCHEMA,
    ZERO_TOKENS,
    ChatRequest,
    ChatResult,
    Message,
    UsageDetail,
    reported_tokens,
)
from core.errors import Retryable, Unusable

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _JsonSchemaFormat(msgspec.Struct):
    name: str
    schema: dict[str, object]
    strict: bool = True


class ResponseFormat(msgspec.Struct):
    """`response_format: {type: "json_schema", json_schema: {...}}`: structured outputs
    (https://platform.openai.com/docs/guides/structured-outputs)."""

    json_schema: _JsonSchemaFormat
    type: str = "json_schema"


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True):
    """The request body; fields we send, in the reference's order."""

    messages: tuple[Message, ...]
    model: str
    # Reasoning models (o-series, GPT-5 family) take only `max_completion_tokens`, which also
    # covers their reasoning tokens; every OpenAI-compatible server takes `max_tokens`.
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None


class _ResponseMessage(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    message: _ResponseMessage
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct):
    # Inside prompt_tokens: https://platform.openai.com/docs/guides/prompt-caching
    cached_tokens: msgspec.Raw = ZERO_TOKENS


class _CompletionDetails(msgspec.Struct):
    # Inside completion_tokens, billed as output: https://platform.openai.com/docs/guides/reasoning
    reasoning_tokens: msgspec.Raw = ZERO_TOKENS


class _Usage(msgspec.Struct):
    # Raw, read by `reported_tokens`: a garbled figure must not cost us the answer.
    prompt_tokens: msgspec.Raw = ZERO_TOKENS
    completion_tokens: msgspec.Raw = ZERO_TOKENS
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class ChatCompletion(msgspec.Struct):
    """A view of the response: only the fields we read; unknown fields are skipped."""

    choices: list[_Choice]
    usage: _Usage | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ChatCompletion)


def request_body(request: ChatRequest) -> ChatCompletionRequest:
    """The body for `request`, shaped for its model: the token-limit field it takes (with the
    reasoning allowance on top), its reasoning effort, sampling only where it is accepted."""
    limit = request.output_limit
    completion_field = request.token_field == "max_completion_tokens"
    return ChatCompletionRequest(
        messages=request.messages,
        model=request.model,
        max_completion_tokens=limit if completion_field else None,
        max_tokens=None if completion_field else limit,
        reasoning_effort=request.reasoning.effort if request.reasoning is not None else None,
        response_format=score_format(request),
        temperature=request.temperature,
        top_p=request.top_p,
    )


def encode(request: ChatRequest) -> bytes:
    """The JSON body for `request`."""
    return _encoder.encode(request_body(request))


def usage_detail(usage: _Usage) -> UsageDetail:
    """Reasoning and cached prompt tokens of a usage object (garbled figures count as 0)."""
    prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
    return UsageDetail(
        reasoning_tokens=(reported_tokens(completion.reasoning_tokens, null=0) or 0) if completion else 0,
        cache_read_tokens=(reported_tokens(prompt.cached_tokens, null=0) or 0) if prompt else 0,
    )


def score_format(request: ChatRequest) -> ResponseFormat | None:
    """The structured-output format of a review score, when the request asks for one.

    The answer's `message.content` is then the `ReviewScore` JSON itself.
    """
    if not request.structured_score:
        return None
    return ResponseFormat(json_schema=_JsonSchemaFormat(name="review_score", schema=REVIEW_SCORE_JSON_SCHEMA))


def url(base_url: str, model: str) -> str:
    """`{base_url}/chat/completions`; the model travels in the body."""
    return base_url.rstrip("/") + "/chat/completions"


def headers(api_key: str) -> dict[str, str]:
    """Request headers; they hold the key, so never log them."""
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


def decode(status: int, headers: Mapping[str, str], body: bytes, latency_s: float) -> ChatResult:
    """The result of one response.

    Raises `Retryable` for 408/409/429/5xx and for a 2xx whose body is unreadable or
    has no choices; `AccountError` for out of quota or a refused key; `Permanent` for
    other 4xx; `Unusable` (with the billed usage) for a 2xx answer without text: a
    content-filter stop, a refusal, max_tokens reached before any text, or empty.
    """
    response = decode_success(status, headers, body, _decoder)
    if not response.choices:
        raise Retryable("response has no choices", http_status=status)
    choice = response.choices[0]
    finish_reason = choice.finish_reason or "stop"
    usage = response.usage
    input_tokens = reported_tokens(usage.prompt_tokens) if usage is not None else None
    output_tokens = reported_tokens(usage.completion_tokens) if usage is not None else None
    text = choice.message.content
    unusable = None
    if finish_reason == "content_filter":
        # Even partial text is withheld material: it stopped where the filter cut it.
        unusable = Unusable(
            "filtered",
            "answer stopped by the provider's content filter (finish_reason=content_filter)",
            http_status=status,
        )
    elif choice.message.refusal:
        unusable = Unusable("refused", shorten(f"model refused: {choice.message.refusal}"), http_status=status)
    else:
        unusable = no_text(text, finish_reason, field="finish_reason", truncated_by="length", status=status)
    return chat_result(
        text,
        finish_reason,
        input_tokens,
        output_tokens,
        unusable,
        status=status,
        headers=headers,
        latency_s=latency_s,
        detail=usage_detail(usage) if usage is not None else None,
    )
