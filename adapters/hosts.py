"""Who serves an OpenAI-wire teacher: OpenAI, Azure OpenAI, OpenRouter or another compatible server.

The body is the same everywhere (adapters/openai.py); the URL, the auth header, the
optional extra headers and whether structured output is available differ by host:

- Azure OpenAI: `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`
  with the key in an `api-key` header
  (https://learn.microsoft.com/en-us/azure/ai-services/openai/reference#chat-completions);
  structured outputs from api-version 2024-08-01-preview on
  (https://learn.microsoft.com/en-us/azure/ai-services/openai/how-to/structured-outputs).
- OpenRouter: `https://openrouter.ai/api/v1`, Bearer key, optional `HTTP-Referer` and `X-Title`
  attribution headers (https://openrouter.ai/docs/api-reference/overview#headers); structured
  outputs for the models that support them (https://openrouter.ai/docs/features/structured-outputs).
- vLLM (`response_format` json_schema through guided decoding,
  https://docs.vllm.ai/en/latest/features/structured_outputs.html), llama.cpp's server
  (json_schema response_format, https://github.com/ggml-org/llama.cpp/tree/master/tools/server),
  Together (https://docs.together.ai/docs/json-mode), Groq
  (https://console.groq.com/docs/structured-outputs), DeepInfra
  (https://deepinfra.com/docs/advanced/json_mode): Bearer key at their own base URLs.
- `compatible`: any other OpenAI-compatible server; nothing is assumed about structured output.

The key only ever travels in a header, never in the URL.
"""

from __future__ import annotations

from urllib.parse import quote

import msgspec

from core.calls import HostName, HostRoute


class HostInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What differs between hosts of the OpenAI wire."""

    # None: the config must give `base_url` (a server of your own, or Azure's resource endpoint).
    default_base_url: str | None
    # The `response_format: {type: json_schema}` a structured review score needs.
    structured_output: bool


HOSTS: dict[HostName, HostInfo] = {
    "openai": HostInfo(default_base_url="https://api.openai.com/v1", structured_output=True),
    "azure": HostInfo(default_base_url=None, structured_output=True),
    "openrouter": HostInfo(default_base_url="https://openrouter.ai/api/v1", structured_output=True),
    "vllm": HostInfo(default_base_url=None, structured_output=True),
    "llamacpp": HostInfo(default_base_url=None, structured_output=True),
    "together": HostInfo(default_base_url="https://api.together.xyz/v1", structured_output=True),
    "groq": HostInfo(default_base_url="https://api.groq.com/openai/v1", structured_output=True),
    "deepinfra": HostInfo(default_base_url="https://api.deepinfra.com/v1/openai", structured_output=True),
    "compatible": HostInfo(default_base_url=None, structured_output=False),
}
# Azure accepts `response_format: json_schema` from this api-version on (structured-outputs page above).
AZURE_STRUCTURED_SINCE = "2024-08-01"


def structured_output_problem(route: HostRoute) -> str | None:
    """Why this host cannot give a structured review score, naming the key to change; None when it can."""
    if not HOSTS[route.host].structured_output:
        return (
            f"`host` = {route.host!r} promises no structured output; set `host` to the server you use "
            "(vllm, llamacpp, together, groq, deepinfra, openrouter) or [review] structured = false"
        )
    if route.host == "azure" and (route.api_version or "")[:10] < AZURE_STRUCTURED_SINCE:
        return (
            f"`api_version` = {route.api_version!r} predates Azure's structured outputs; use "
            f"{AZURE_STRUCTURED_SINCE}-preview or later, or [review] structured = false"
        )
    return None


def chat_url(route: HostRoute, base_url: str) -> str:
    """The chat completions URL at this host; the model travels in the body (Azure: in the deployment)."""
    base = base_url.rstrip("/")
    if route.host == "azure":
        deployment = quote(route.deployment or "", safe="")
        return f"{base}/openai/deployments/{deployment}/chat/completions?api-version={quote(route.api_version or '')}"
    return base + "/chat/completions"


def auth_headers(route: HostRoute, api_key: str) -> dict[str, str]:
    """Request headers for this host; they hold the key, so never log them."""
    headers = {"api-key": api_key} if route.host == "azure" else {"Authorization": f"Bearer {api_key}"}
    if route.host == "openrouter":
        if route.site_url:
            headers["HTTP-Referer"] = route.site_url
        if route.site_title:
            headers["X-Title"] = route.site_title
    headers["Content-Type"] = "application/json"
    return headers
