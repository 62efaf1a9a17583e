"""The provider side of the three wire formats: read requests, write answers and errors.

Independent of adapters/ on purpose: a test double that reused the client's
Structs would agree with the client's mistakes. Requests are read leniently (what
the official SDKs send: string or content-part messages, the newer and older names
of max tokens); responses carry every field the official SDKs require (ids,
created, usage, finish reasons).

OpenAI: https://platform.openai.com/docs/api-reference/chat/object,
https://platform.openai.com/docs/guides/error-codes/api-errors
Gemini: https://ai.google.dev/api/generate-content#generatecontentresponse,
https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
Anthropic: https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/errors

Besides answers and errors, each wire writes the answers without usable text
(`Finish`: filtered, refused, truncated by thinking), the out-of-quota answer and
the overload answer the way that provider does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from itertools import count
from typing import ClassVar, Literal

import msgspec

from emulator.caching import breakpoint_tokens
from emulator.reasoning import (
    Rejected,
    anthropic_thinks_by_default,
    check_anthropic,
    check_gemini,
    check_openai,
    gemini_thinking_on,
    openai_reasoning,
)
from emulator.spec import AnswerRequest

ErrorKind = Literal["auth", "invalid", "not_found", "rate_limit", "server", "unavailable"]
# How an answer ended: "stop" and "length" carry text; the others carry none.
# "truncated" is a reasoning model whose thinking used all of max_tokens.
Finish = Literal["stop", "length", "filtered", "refusal", "truncated"]

# What OpenAI puts in message.refusal; its tokens are the output billed for a refusal.
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

# What an Anthropic answer shows of its thinking (Claude 4 returns a summary, billed in full).
_THINKING_BLOCK: dict[str, object] = {
    "type": "thinking",
    "thinking": "Let me work through this step by step...",
    "signature": "emulator",
}

# Used when a request leaves max tokens out (Anthropic requires it).
DEFAULT_MAX_TOKENS = 4096

_encoder = msgspec.json.Encoder()
_ids = count(1)


class _TextPart(msgspec.Struct):
    type: str = "text"
    text: str = ""
    # Anthropic prompt caching: a breakpoint after this block.
    cache_control: dict | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What one answer bills: prompt and output tokens, the thinking inside the output, the cached prompt parts."""

    input_tokens: int
    output_tokens: int
    thinking: int = 0
    cache_read: int = 0
    cache_write: int = 0


def _text(content: str | list[_TextPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if part.type == "text")


# --- OpenAI chat completions -------------------------------------------------------------------


class _OpenAIMessage(msgspec.Struct):
    role: str
    content: str | list[_TextPart] | None = None


class _ResponseFormat(msgspec.Struct):
    type: str = "text"


class _OpenAIRequest(msgspec.Struct):
    model: str
    messages: list[_OpenAIMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    stream: bool = False
    # https://platform.openai.com/docs/guides/structured-outputs: `{type: json_schema, json_schema: {...}}`
    # makes message.content a JSON document of that schema.
    response_format: _ResponseFormat | None = None


class OpenAIWire:
    provider = "openai"
    _decoder = msgspec.json.Decoder(_OpenAIRequest)
    _errors: ClassVar[dict[str, tuple[int, str, str | None]]] = {
        "auth": (401, "invalid_request_error", "invalid_api_key"),
        "invalid": (400, "invalid_request_error", None),
        "not_found": (404, "invalid_request_error", "model_not_found"),
        "rate_limit": (429, "requests", "rate_limit_exceeded"),
        "server": (500, "server_error", None),
        "unavailable": (503, "server_error", None),
    }

    @staticmethod
    def has_auth(headers: Mapping[str, str]) -> bool:
        return bool(headers.get("Authorization"))

    def parse(self, body: bytes, path_model: str | None) -> AnswerRequest:
        req = self._decoder.decode(body)
        if req.stream:
            raise ValueError("stream=true is not supported by the emulator")
        check_openai(req.model, req.max_tokens, req.temperature, req.top_p, req.reasoning_effort)
        return AnswerRequest(
            provider=self.provider,
            model=req.model,
            messages=[(m.role, _text(m.content)) for m in req.messages],
            max_tokens=req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            thinks=openai_reasoning(req.model),
            effort=req.reasoning_effort,
            structured=req.response_format is not None and req.response_format.type == "json_schema",
        )

    def answer(self, ask: AnswerRequest, text: str, finish: Finish, billed: Usage, usage: bool = True) -> bytes:
        input_tokens, output_tokens = billed.input_tokens, billed.output_tokens
        message: dict[str, object] = {"role": "assistant", "content": text, "refusal": None}
        finish_reason = _OPENAI_FINISH[finish]
        if finish == "refusal":
            # https://platform.openai.com/docs/guides/structured-outputs#refusals
            message.update(content=None, refusal=REFUSAL_TEXT)
        elif finish in ("filtered", "truncated"):
            message["content"] = ""
        document: dict[str, object] = {
            "id": f"chatcmpl-emu{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ask.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "system_fingerprint": "fp_emulator",
        }
        if usage:
            counts: dict[str, object] = {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            }
            if finish == "truncated" or billed.thinking:
                # Reasoning tokens are billed as completion tokens and never shown:
                # https://platform.openai.com/docs/guides/reasoning#allocating-space-for-reasoning
                counts["completion_tokens_details"] = {"reasoning_tokens": billed.thinking or output_tokens}
            if billed.cache_read:
                counts["prompt_tokens_details"] = {"cached_tokens": billed.cache_read}
            document["usage"] = counts
        return _encoder.encode(document)

    def quota_error(self, model: str, quota: int) -> tuple[int, bytes]:
        """429 insufficient_quota: the same status as a rate limit, and no retry will help
        (https://platform.openai.com/docs/guides/error-codes/api-errors)."""
        return 429, _encoder.encode(
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details. For more "
                    "information on this error, read the docs: "
                    "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            }
        )

    def overloaded_error(self) -> tuple[int, bytes]:
        """503 "The server is overloaded or not ready yet." (the error-codes guide above)."""
        return self.error("unavailable", "The server is overloaded or not ready yet.")

    def error(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> tuple[int, bytes]:
        status, error_type, code = self._errors[kind]
        return status, _encoder.encode({"error": {"message": message, "type": error_type, "param": None, "code": code}})

    def rejected(self, exc: Rejected) -> tuple[int, bytes]:
        """400 invalid_request_error naming the parameter, as OpenAI refuses one."""
        return 400, _encoder.encode(
            {"error": {"message": exc.message, "type": "invalid_request_error", "param": exc.param, "code": exc.code}}
        )


class AzureWire(OpenAIWire):
    """Azure OpenAI: the OpenAI body at `{endpoint}/openai/deployments/{deployment}/chat/completions
    ?api-version=...`, the key in an `api-key` header; the deployment, not the body's `model`,
    picks the model (https://learn.microsoft.com/en-us/azure/ai-services/openai/reference#chat-completions)."""

    provider = "azure"

    @staticmethod
    def has_auth(headers: Mapping[str, str]) -> bool:
        return bool(headers.get("api-key"))

    def parse(self, body: bytes, path_model: str | None) -> AnswerRequest:
        ask = super().parse(body, path_model)
        return msgspec.structs.replace(ask, model=path_model or ask.model)


# --- Gemini generateContent ----------------------------------------------------------------------


class _GeminiContent(msgspec.Struct):
    parts: list[_TextPart] = []
    role: str | None = None


class _ThinkingConfig(msgspec.Struct):
    thinkingBudget: int | None = None
    includeThoughts: bool = False


class _GeminiConfig(msgspec.Struct):
    temperature: float | None = None
    topP: float | None = None
    maxOutputTokens: int | None = None
    thinkingConfig: _ThinkingConfig | None = None
    # https://ai.google.dev/gemini-api/docs/structured-output: responseMimeType application/json with
    # a responseSchema (or, newer, responseJsonSchema) makes the answer's text a JSON document of it.
    responseMimeType: str | None = None
    responseSchema: dict[str, object] | None = None
    responseJsonSchema: dict[str, object] | None = None


class _GeminiRequest(msgspec.Struct):
    contents: list[_GeminiContent]
    # The REST API takes both spellings; the official SDKs send camelCase.
    systemInstruction: _GeminiContent | None = None
    system_instruction: _GeminiContent | None = None
    generationConfig: _GeminiConfig | None = None
    generation_config: _GeminiConfig | None = None


_FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"


class GeminiWire:
    provider = "gemini"
    _decoder = msgspec.json.Decoder(_GeminiRequest)
    _errors: ClassVar[dict[str, tuple[int, str]]] = {
        "auth": (401, "UNAUTHENTICATED"),
        "invalid": (400, "INVALID_ARGUMENT"),
        "not_found": (404, "NOT_FOUND"),
        "rate_limit": (429, "RESOURCE_EXHAUSTED"),
        "server": (500, "INTERNAL"),
        "unavailable": (503, "UNAVAILABLE"),
    }

    @staticmethod
    def has_auth(headers: Mapping[str, str]) -> bool:
        return bool(headers.get("x-goog-api-key"))

    def parse(self, body: bytes, path_model: str | None) -> AnswerRequest:
        req = self._decoder.decode(body)
        system = req.systemInstruction or req.system_instruction
        config = req.generationConfig or req.generation_config or _GeminiConfig()
        messages = [("system", _text(system.parts))] if system else []
        messages += [("assistant" if c.role == "model" else "user", _text(c.parts)) for c in req.contents]
        model = path_model or ""
        budget = config.thinkingConfig.thinkingBudget if config.thinkingConfig else None
        check_gemini(model, budget)
        return AnswerRequest(
            provider=self.provider,
            model=model,
            messages=messages,
            max_tokens=config.maxOutputTokens or DEFAULT_MAX_TOKENS,
            temperature=1.0 if config.temperature is None else config.temperature,
            top_p=1.0 if config.topP is None else config.topP,
            # Unset or -1: dynamic thinking, the model's own budget.
            thinks=gemini_thinking_on(model, budget),
            thinking_budget=None if budget in (None, -1) else budget,
            structured=config.responseMimeType == "application/json"
            and (config.responseSchema or config.responseJsonSchema) is not None,
        )

    def answer(self, ask: AnswerRequest, text: str, finish: Finish, billed: Usage, usage: bool = True) -> bytes:
        input_tokens, output_tokens = billed.input_tokens, billed.output_tokens
        candidate: dict[str, object] = {"index": 0}
        counts: dict[str, object] = {"promptTokenCount": input_tokens}
        if finish in ("filtered", "refusal"):
            # A blocked candidate has no content, only its finishReason and the rating that
            # blocked it: https://ai.google.dev/api/generate-content#FinishReason
            candidate["finishReason"] = "SAFETY"
            candidate["safetyRatings"] = [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
            ]
            counts["candidatesTokenCount"] = output_tokens
        elif finish == "truncated":
            # Thinking used the whole budget: no parts, and the output billed is in
            # thoughtsTokenCount, not candidatesTokenCount (which is then left out):
            # https://ai.google.dev/gemini-api/docs/thinking#pricing
            candidate["content"] = {"role": "model"}
            candidate["finishReason"] = "MAX_TOKENS"
            counts["thoughtsTokenCount"] = output_tokens
        else:
            candidate["content"] = {"parts": [{"text": text}], "role": "model"}
            candidate["finishReason"] = "MAX_TOKENS" if finish == "length" else "STOP"
            # Thoughts are billed as output but counted apart from the candidates:
            # https://ai.google.dev/gemini-api/docs/thinking#pricing
            counts["candidatesTokenCount"] = output_tokens - billed.thinking
            if billed.thinking:
                counts["thoughtsTokenCount"] = billed.thinking
        if billed.cache_read:
            counts["cachedContentTokenCount"] = billed.cache_read
        counts["totalTokenCount"] = input_tokens + output_tokens
        document: dict[str, object] = {"candidates": [candidate]}
        if usage:
            document["usageMetadata"] = counts
        document.update(modelVersion=ask.model, responseId=f"emu{next(_ids)}")
        return _encoder.encode(document)

    def quota_error(self, model: str, quota: int) -> tuple[int, bytes]:
        """429 RESOURCE_EXHAUSTED with a per-day QuotaFailure, as a free tier's daily request
        quota answers (https://ai.google.dev/gemini-api/docs/rate-limits). Like the real one it
        also carries a RetryInfo, which a client must not take for a short wait."""
        return 429, _encoder.encode(
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and billing details. For more "
                    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [
                                {
                                    "quotaMetric": _FREE_TIER_METRIC,
                                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                                    "quotaDimensions": {"location": "global", "model": model},
                                    "quotaValue": str(quota),
                                }
                            ],
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.Help",
                            "links": [
                                {
                                    "description": "Learn more about Gemini API quotas",
                                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                                }
                            ],
                        },
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"},
                    ],
                }
            }
        )

    def overloaded_error(self) -> tuple[int, bytes]:
        """503 UNAVAILABLE "The model is overloaded." (the troubleshooting page above)."""
        return self.error("unavailable", "The model is overloaded. Please try again later.")

    def error(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> tuple[int, bytes]:
        status, code = self._errors[kind]
        error: dict[str, object] = {"code": status, "message": message, "status": code}
        if retry_after_s is not None:
            # Gemini's real 429s say when to come back in the body, as google.rpc.RetryInfo.
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_s:.3f}s"}
            ]
        return status, _encoder.encode({"error": error})

    def rejected(self, exc: Rejected) -> tuple[int, bytes]:
        """400 INVALID_ARGUMENT with the refusal's text."""
        return self.error("invalid", exc.message)


# --- Anthropic Messages --------------------------------------------------------------------------


class _AnthropicMessage(msgspec.Struct):
    role: str
    content: str | list[_TextPart]


class _AnthropicThinking(msgspec.Struct):
    type: str = "enabled"
    budget_tokens: int = 0


class _ToolChoice(msgspec.Struct):
    type: str = "auto"
    name: str | None = None


class _AnthropicOutputConfig(msgspec.Struct):
    effort: str | None = None


class _AnthropicRequest(msgspec.Struct):
    model: str
    messages: list[_AnthropicMessage]
    max_tokens: int
    system: str | list[_TextPart] | None = None
    temperature: float | None = None
    top_p: float | None = None
    thinking: _AnthropicThinking | None = None
    output_config: _AnthropicOutputConfig | None = None
    stream: bool = False
    # `tool_choice: {type: "tool", name}` forces that tool: the answer is one tool_use block whose
    # input follows the tool's input_schema, and stop_reason is "tool_use"
    # (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#forcing-tool-use).
    tool_choice: _ToolChoice | None = None


def _blocks(role: str, content: str | list[_TextPart] | None) -> list[tuple[str, str, bool]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [(role, content, False)]
    return [(role, part.text, part.cache_control is not None) for part in content if part.type == "text"]


class AnthropicWire:
    provider = "anthropic"
    _decoder = msgspec.json.Decoder(_AnthropicRequest)
    _errors: ClassVar[dict[str, tuple[int, str]]] = {
        "auth": (401, "authentication_error"),
        "invalid": (400, "invalid_request_error"),
        "not_found": (404, "not_found_error"),
        "rate_limit": (429, "rate_limit_error"),
        "server": (500, "api_error"),
        # Anthropic's "overloaded" is its own status code.
        "unavailable": (529, "overloaded_error"),
    }

    @staticmethod
    def has_auth(headers: Mapping[str, str]) -> bool:
        # The SDK sends x-api-key for `api_key=` and `Authorization: Bearer` for `auth_token=`.
        return bool(headers.get("x-api-key") or headers.get("Authorization"))

    def parse(self, body: bytes, path_model: str | None) -> AnswerRequest:
        req = self._decoder.decode(body)
        if req.stream:
            raise ValueError("stream=true is not supported by the emulator")
        budget = req.thinking.budget_tokens if req.thinking is not None and req.thinking.type == "enabled" else None
        choice = req.tool_choice
        forced = choice.name if choice is not None and choice.type == "tool" else None
        adaptive = (
            req.thinking.type == "adaptive" if req.thinking is not None else anthropic_thinks_by_default(req.model)
        )
        # Adaptive thinking's default effort is high.
        effort = req.output_config.effort if req.output_config is not None else None
        check_anthropic(
            req.model,
            req.max_tokens,
            budget,
            req.temperature,
            req.top_p,
            adaptive=adaptive,
            effort=effort,
            forced_tool=forced is not None and req.thinking is not None,
        )
        messages = [("system", _text(req.system))] if req.system else []
        messages += [(m.role, _text(m.content)) for m in req.messages]
        blocks = _blocks("system", req.system) + [b for m in req.messages for b in _blocks(m.role, m.content)]
        return AnswerRequest(
            provider=self.provider,
            model=req.model,
            messages=messages,
            max_tokens=req.max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            thinks=budget is not None or adaptive,
            effort=(effort or "high") if adaptive else None,
            thinking_budget=budget,
            cache_breakpoint=breakpoint_tokens(blocks),
            structured=forced is not None,
            tool_name=forced,
        )

    def answer(self, ask: AnswerRequest, text: str, finish: Finish, billed: Usage, usage: bool = True) -> bytes:
        input_tokens, output_tokens = billed.input_tokens, billed.output_tokens
        content: list[dict[str, object]] = [{"type": "text", "text": text}] if text else []
        stop_reason = _ANTHROPIC_STOP[finish]
        if ask.tool_name is not None and finish in ("stop", "length"):
            content = [
                {"type": "tool_use", "id": f"toolu_emu{next(_ids)}", "name": ask.tool_name, "input": _object(text)}
            ]
            stop_reason = "tool_use" if finish == "stop" else stop_reason
        if billed.thinking and finish in ("stop", "length"):
            # Thinking comes first, as a block of its own.
            content.insert(0, _THINKING_BLOCK)
        if finish in ("filtered", "refusal"):
            # Anthropic has no content filter: its classifiers stop the answer with
            # stop_reason "refusal", billed for the output up to there:
            # https://docs.anthropic.com/en/docs/test-and-evaluate/strengthen-guardrails/handle-streaming-refusals
            content = []
        elif finish == "truncated":
            # Extended thinking used the whole max_tokens: a thinking block and no text block.
            # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
            content = [_THINKING_BLOCK]
        document: dict[str, object] = {
            "id": f"msg_emu{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if usage:
            # Cache reads and writes are reported apart from input_tokens, not inside it.
            document["usage"] = {
                "input_tokens": input_tokens - billed.cache_read - billed.cache_write,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": billed.cache_write,
                "cache_read_input_tokens": billed.cache_read,
            }
        return _encoder.encode(document)

    def quota_error(self, model: str, quota: int) -> tuple[int, bytes]:
        """400 invalid_request_error: the credit balance is too low (https://docs.anthropic.com/en/api/errors)."""
        return self.error(
            "invalid",
            "Your credit balance is too low to access the Anthropic API. "
            "Please go to Plans & Billing to upgrade or purchase credits.",
        )

    def overloaded_error(self) -> tuple[int, bytes]:
        """529 overloaded_error: the API is overloaded for everyone (https://docs.anthropic.com/en/api/errors)."""
        return self.error("unavailable", "Overloaded")

    def error(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> tuple[int, bytes]:
        status, error_type = self._errors[kind]
        return status, _encoder.encode({"type": "error", "error": {"type": error_type, "message": message}})

    def rejected(self, exc: Rejected) -> tuple[int, bytes]:
        """400 invalid_request_error with the refusal's text."""
        return self.error("invalid", exc.message)


def _object(text: str) -> dict[str, object]:
    """A tool's input: the answer's JSON object, or {} when max_tokens cut it before it closed."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def structured_score_text(text: str) -> str:
    """What constrained decoding makes of an answer asked for a review score: a JSON object
    with `reasoning` and `score`. Scripted teachers (fair_script.py) write one; any other answer
    becomes its reasoning, with the last 1..5 digit in it (else 3) as the score."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict) and "score" in value:
        return text
    digits = [int(c) for c in text if c in "12345"]
    return _encoder.encode({"reasoning": text, "score": digits[-1] if digits else 3}).decode()


# https://platform.openai.com/docs/api-reference/chat/object: finish_reason is stop, length or
# content_filter ("omitted content due to a flag from our content filters"); a refusal ends with stop.
_OPENAI_FINISH: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "filtered": "content_filter",
    "refusal": "stop",
    "truncated": "length",
}
_ANTHROPIC_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "filtered": "refusal",
    "refusal": "refusal",
    "truncated": "max_tokens",
}

Wire = OpenAIWire | GeminiWire | AnthropicWire
WIRES: dict[str, Wire] = {
    "openai": OpenAIWire(),
    "gemini": GeminiWire(),
    "anthropic": AnthropicWire(),
    "azure": AzureWire(),
}
