"""The provider side of the three wire formats: read requests, write answers and errors.

Independent of adapters/ on purpose: a test double that reused the client's
Structs would agree with the client's mistakes. Requests are read leniently (what
the official SDKs send: string or content-part messages, the newer and older names
of max tokens); responses carry every field the official SDKs require (ids,
created, usage, finish reasons).

OpenAI: https://platform.openai.com/docs/api-reference/chat/object
Gemini: https://ai.google.dev/api/generate-content#generatecontentresponse
Anthropic: https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from itertools import count
from typing import Literal

import msgspec

from bench.emulator.spec import AnswerRequest

ErrorKind = Literal["auth", "invalid", "not_found", "rate_limit", "server", "unavailable"]

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
    _errors = {
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

    def answer(self, ask: AnswerRequest, text: str, truncated: bool, input_tokens: int, output_tokens: int) -> bytes:
        return _encoder.encode(
            {
                "id": f"chatcmpl-emu{next(_ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": ask.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "length" if truncated else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
                "system_fingerprint": "fp_emulator",
            }
        )

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
    _errors = {
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

    def answer(self, ask: AnswerRequest, text: str, truncated: bool, input_tokens: int, output_tokens: int) -> bytes:
        return _encoder.encode(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "MAX_TOKENS" if truncated else "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": input_tokens,
                    "candidatesTokenCount": output_tokens,
                    "totalTokenCount": input_tokens + output_tokens,
                },
                "modelVersion": ask.model,
                "responseId": f"emu{next(_ids)}",
            }
        )

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
    _errors = {
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
        return bool(headers.get("x-api-key"))

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

    def answer(self, ask: AnswerRequest, text: str, truncated: bool, input_tokens: int, output_tokens: int) -> bytes:
        return _encoder.encode(
            {
                "id": f"msg_emu{next(_ids)}",
                "type": "message",
                "role": "assistant",
                "model": ask.model,
                "content": [{"type": "text", "text": text}] if text else [],
                "stop_reason": "max_tokens" if truncated else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
        )

    def error(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> tuple[int, bytes]:
        status, error_type = self._errors[kind]
        return status, _encoder.encode({"type": "error", "error": {"type": error_type, "message": message}})


Wire = OpenAIWire | GeminiWire | AnthropicWire
WIRES: dict[str, Wire] = {"openai": OpenAIWire(), "gemini": GeminiWire(), "anthropic": AnthropicWire()}
