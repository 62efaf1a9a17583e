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

from emulator.spec import AnswerRequest

ErrorKind = Literal["auth", "invalid", "not_found", "rate_limit", "server", "unavailable"]
# How an answer ended: "stop" and "length" carry text; the others carry none.
# "truncated" is a reasoning model whose thinking used all of max_tokens.
Finish = Literal["stop", "length", "filtered", "refusal", "truncated"]

# What OpenAI puts in message.refusal; its tokens are the output billed for a refusal.
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

# Used when a request leaves max tokens out (Anthropic requires it).
DEFAULT_MAX_TOKENS = 4096

_encoder = msgspec.json.Encoder()
_ids = count(1)


class _TextPart(msgspec.Struct):
    type: str = "text"
    text: str = ""


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


class _OpenAIRequest(msgspec.Struct):
    model: str
    messages: list[_OpenAIMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False


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
        return AnswerRequest(
            provider=self.provider,
            model=req.model,
            messages=[(m.role, _text(m.content)) for m in req.messages],
            max_tokens=req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
        )

    def answer(
        self, ask: AnswerRequest, text: str, finish: Finish, input_tokens: int, output_tokens: int, usage: bool = True
    ) -> bytes:
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
            if finish == "truncated":
                # Reasoning tokens are billed as completion tokens and never shown:
                # https://platform.openai.com/docs/guides/reasoning#allocating-space-for-reasoning
                counts["completion_tokens_details"] = {"reasoning_tokens": output_tokens}
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


# --- Gemini generateContent ----------------------------------------------------------------------


class _GeminiContent(msgspec.Struct):
    parts: list[_TextPart] = []
    role: str | None = None


class _GeminiConfig(msgspec.Struct):
    temperature: float | None = None
    topP: float | None = None
    maxOutputTokens: int | None = None


class _GeminiRequest(msgspec.Struct):
    contents: list[_GeminiContent]
    # The REST API takes both spellings; the official SDKs send camelCase.
    systemInstruction: _GeminiContent | None = None
    system_instruction: _GeminiContent | None = None
    generationConfig: _GeminiConfig | None = None
    generation_config: _GeminiConfig | None = None


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
        return AnswerRequest(
            provider=self.provider,
            model=path_model or "",
            messages=messages,
            max_tokens=config.maxOutputTokens or DEFAULT_MAX_TOKENS,
            temperature=1.0 if config.temperature is None else config.temperature,
            top_p=1.0 if config.topP is None else config.topP,
        )

    def answer(
        self, ask: AnswerRequest, text: str, finish: Finish, input_tokens: int, output_tokens: int, usage: bool = True
    ) -> bytes:
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
            counts["candidatesTokenCount"] = output_tokens
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
                                    "quotaMetric": "generativelanguage.googleapis.com/"
                                    "generate_content_free_tier_requests",
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


# --- Anthropic Messages --------------------------------------------------------------------------


class _AnthropicMessage(msgspec.Struct):
    role: str
    content: str | list[_TextPart]


class _AnthropicRequest(msgspec.Struct):
    model: str
    messages: list[_AnthropicMessage]
    max_tokens: int
    system: str | list[_TextPart] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False


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
        messages = [("system", _text(req.system))] if req.system else []
        messages += [(m.role, _text(m.content)) for m in req.messages]
        return AnswerRequest(
            provider=self.provider,
            model=req.model,
            messages=messages,
            max_tokens=req.max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
        )

    def answer(
        self, ask: AnswerRequest, text: str, finish: Finish, input_tokens: int, output_tokens: int, usage: bool = True
    ) -> bytes:
        content: list[dict[str, str]] = [{"type": "text", "text": text}] if text else []
        if finish in ("filtered", "refusal"):
            # Anthropic has no content filter: its classifiers stop the answer with
            # stop_reason "refusal", billed for the output up to there:
            # https://docs.anthropic.com/en/docs/test-and-evaluate/strengthen-guardrails/handle-streaming-refusals
            content = []
        elif finish == "truncated":
            # Extended thinking used the whole max_tokens: a thinking block and no text block.
            # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
            content = [
                {"type": "thinking", "thinking": "Let me work through this step by step...", "signature": "emulator"}
            ]
        document: dict[str, object] = {
            "id": f"msg_emu{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": content,
            "stop_reason": _ANTHROPIC_STOP[finish],
            "stop_sequence": None,
        }
        if usage:
            document["usage"] = {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
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
WIRES: dict[str, Wire] = {"openai": OpenAIWire(), "gemini": GeminiWire(), "anthropic": AnthropicWire()}
