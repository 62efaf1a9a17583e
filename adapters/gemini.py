"""Google Gemini `generateContent` on the wire (REST, API key in `x-goog-api-key`).

API reference: https://ai.google.dev/api/generate-content#method:-models.generatecontent
`base_url` is the host only, as in the official SDK: `https://generativelanguage.googleapis.com`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from adapters.classify import chat_result, decode_success, error_detail, no_text, parse_duration_s
from core.calls import ZERO_TOKENS, ChatRequest, ChatResult, UsageDetail, reported_tokens
from core.errors import Retryable, Unusable

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# Finish reasons that mean the answer was withheld; asking again gets the same.
BLOCKED_FINISH_REASONS = frozenset({"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"})


class Part(msgspec.Struct):
    text: str


class Content(msgspec.Struct, omit_defaults=True):
    parts: list[Part]
    role: str | None = None


class ThinkingConfig(msgspec.Struct):
    """https://ai.google.dev/api/generate-content#ThinkingConfig; 0 turns thinking off where the model allows."""

    thinkingBudget: int


class GenerationConfig(msgspec.Struct, omit_defaults=True):
    temperature: float | None = None
    topP: float | None = None
    # Thoughts count against it too: https://ai.google.dev/gemini-api/docs/thinking
    maxOutputTokens: int | None = None
    thinkingConfig: ThinkingConfig | None = None
    # Structured output: https://ai.google.dev/gemini-api/docs/structured-output
    responseMimeType: str | None = None
    responseSchema: dict[str, object] | None = None


# `core.calls.ReviewScore` in Gemini's schema dialect (an OpenAPI 3.0 subset: upper-case types,
# enums for strings only, `propertyOrdering` for the order the model writes them in).
REVIEW_SCORE_SCHEMA: dict[str, object] = {
    "type": "OBJECT",
    "properties": {
        "reasoning": {"type": "STRING", "description": "A brief check of the rationale against the hint."},
        "score": {"type": "INTEGER", "description": "1 to 5: 1 wrong, 3 real flaws, 5 sound."},
    },
    "required": ["reasoning", "score"],
    "propertyOrdering": ["reasoning", "score"],
}


class GenerateContentRequest(msgspec.Struct, omit_defaults=True):
    """The request body. System messages go to `systemInstruction`; roles are user/model."""

    contents: list[Content]
    systemInstruction: Content | None = None
    generationConfig: GenerationConfig | None = None


class _ResponsePart(msgspec.Struct):
    text: str = ""
    # Thought summaries (includeThoughts) are parts too; they are not the answer.
    thought: bool = False


class _ResponseContent(msgspec.Struct):
    parts: list[_ResponsePart] = []


class _Candidate(msgspec.Struct):
    content: _ResponseContent | None = None
    finishReason: str | None = None


class _UsageMetadata(msgspec.Struct):
    # Raw, read by `reported_tokens`: a garbled figure must not cost us the answer.
    # Zero counts are left out of the JSON, hence the defaults.
    promptTokenCount: msgspec.Raw = ZERO_TOKENS
    candidatesTokenCount: msgspec.Raw = ZERO_TOKENS
    # Gemini 2.5 bills thinking tokens as output but counts them apart, not in candidatesTokenCount.
    thoughtsTokenCount: msgspec.Raw = ZERO_TOKENS
    # Inside promptTokenCount: https://ai.google.dev/api/generate-content#UsageMetadata
    cachedContentTokenCount: msgspec.Raw = ZERO_TOKENS


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class GenerateContentResponse(msgspec.Struct):
    """A view of the response: only the fields we read; unknown fields are skipped."""

    candidates: list[_Candidate] = []
    usageMetadata: _UsageMetadata | None = None
    promptFeedback: _PromptFeedback | None = None


class _ErrorInfo(msgspec.Struct):
    type: str = msgspec.field(name="@type", default="")
    retryDelay: str | None = None


class _Error(msgspec.Struct):
    details: list[_ErrorInfo] = []


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GenerateContentResponse)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_ROLES = {"user": "user", "assistant": "model"}


def request_body(request: ChatRequest) -> GenerateContentRequest:
    """The body for `request`: a thinking budget when it has one (0: off), added to `maxOutputTokens`
    because thoughts count against it."""
    system = [Part(m.content) for m in request.messages if m.role == "system"]
    contents = [Content([Part(m.content)], _ROLES[m.role]) for m in request.messages if m.role != "system"]
    reasoning = request.reasoning
    return GenerateContentRequest(
        contents=contents,
        systemInstruction=Content(system) if system else None,
        generationConfig=GenerationConfig(
            temperature=request.temperature,
            topP=request.top_p,
            maxOutputTokens=request.output_limit,
            thinkingConfig=ThinkingConfig(reasoning.budget_tokens) if reasoning is not None else None,
            # The answer's text is then the `ReviewScore` JSON itself.
            responseMimeType="application/json" if request.structured_score else None,
            responseSchema=REVIEW_SCORE_SCHEMA if request.structured_score else None,
        ),
    )


def encode(request: ChatRequest) -> bytes:
    """The JSON body for `request`; several system messages are joined into one instruction."""
    return _encoder.encode(request_body(request))


def url(base_url: str, model: str) -> str:
    """`{base_url}/v1beta/models/{model}:generateContent`."""
    return f"{base_url.rstrip('/')}/v1beta/models/{model}:generateContent"


def headers(api_key: str) -> dict[str, str]:
    """Request headers; they hold the key, so never log them."""
    return {"x-goog-api-key": api_key, "Content-Type": "application/json"}


def _retry_info_s(body: bytes) -> float | None:
    # Gemini puts its delay in the error body (google.rpc.RetryInfo), not in a header.
    try:
        error = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        return None
    for info in error.details if error else ():
        if info.type.endswith("google.rpc.RetryInfo") and info.retryDelay:
            return parse_duration_s(info.retryDelay)
    return None


def decode(status: int, headers: Mapping[str, str], body: bytes, latency_s: float) -> ChatResult:
    """The result of one response.

    Raises `Retryable` for 408/409/429 (RESOURCE_EXHAUSTED)/5xx and for a 2xx with an
    unreadable body or no candidates; `AccountError` for a per-day quota or a refused
    key; `Permanent` for other 4xx; `Unusable` (with the billed usage) for a blocked
    prompt or answer (blockReason, finishReason SAFETY, RECITATION, ...), MAX_TOKENS
    before any text, or no text.
    """
    after_s = _retry_info_s(body) if status == 429 else None
    response = decode_success(status, headers, body, _decoder, after_s=after_s)
    usage = response.usageMetadata
    feedback = response.promptFeedback
    unusable = None
    text = ""
    finish_reason = "STOP"
    if feedback is not None and feedback.blockReason:
        unusable = Unusable(
            "filtered", f"prompt blocked by the provider (blockReason={feedback.blockReason})", http_status=status
        )
    elif not response.candidates:
        # Every field is optional here, so a 200 carrying an error object decodes too.
        detail = error_detail(body) if body.lstrip().startswith(b'{"error"') else None
        raise Retryable(
            f"HTTP {status} carrying an error: {detail}" if detail else "response has no candidates", http_status=status
        )
    else:
        candidate = response.candidates[0]
        finish_reason = candidate.finishReason or "STOP"
        parts = candidate.content.parts if candidate.content else []
        text = "".join(p.text for p in parts if not p.thought)
        if finish_reason in BLOCKED_FINISH_REASONS:
            unusable = Unusable(
                "filtered", f"answer withheld by the provider (finishReason={finish_reason})", http_status=status
            )
        else:
            unusable = no_text(text, finish_reason, field="finishReason", truncated_by="MAX_TOKENS", status=status)
    input_tokens = output_tokens = None
    detail = None
    if usage is not None:
        input_tokens = reported_tokens(usage.promptTokenCount)
        outputs = (reported_tokens(usage.candidatesTokenCount), reported_tokens(usage.thoughtsTokenCount))
        output_tokens = None if None in outputs else sum(outputs)  # type: ignore[arg-type]
        detail = UsageDetail(
            reasoning_tokens=outputs[1] or 0, cache_read_tokens=reported_tokens(usage.cachedContentTokenCount) or 0
        )
    return chat_result(
        text,
        finish_reason,
        input_tokens,
        output_tokens,
        unusable,
        status=status,
        headers=headers,
        latency_s=latency_s,
        detail=detail,
    )
