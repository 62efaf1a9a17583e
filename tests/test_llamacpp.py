"""The OpenAI adapter against a server nobody here wrote: llama.cpp on the PyPI SmolLM2 GGUF."""

from __future__ import annotations

import pytest

from adapters.client import ChatClient
from bench.llamacpp import llamacpp_installed, serve_llamacpp
from core.calls import ChatRequest, Message

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.skipif(not llamacpp_installed(), reason='needs pip install "llama-cpp-python[server]"'),
]


async def test_openai_adapter_against_llamacpp():
    with serve_llamacpp() as base_url:
        async with ChatClient("openai", api_key="local", base_url=base_url, max_connections=2) as client:
            request = ChatRequest(
                model="smollm2",
                messages=(Message("user", "What is 2 + 3? Answer with a number."),),
                temperature=0.0,
                max_tokens=24,
            )
            result = await client.complete(request, timeout_s=120)
    assert result.text.strip()
    assert result.input_tokens > 5 and 0 < result.output_tokens <= 24
    assert result.finish_reason in ("stop", "length")
    assert result.latency_s > 0
