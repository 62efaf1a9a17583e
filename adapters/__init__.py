"""Provider adapters: the wire formats (openai, gemini, anthropic) and `ChatClient`.

`ChatClient` and `make_client` are loaded on first use, so that `core.calls`
(imported by core.config) does not pull in aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.client import ChatClient
    from core.calls import HostRoute, ProviderName

__all__ = ["ChatClient", "make_client"]


def make_client(
    provider: ProviderName,
    *,
    api_key: str,
    base_url: str | None = None,
    max_connections: int = 64,
    name: str = "",
    route: HostRoute | None = None,
) -> ChatClient:
    """A `ChatClient` for `provider` (at `route`'s host, for the OpenAI wire); ConfigError when it is unknown."""
    from adapters.client import ChatClient

    return ChatClient(
        provider, api_key=api_key, base_url=base_url, max_connections=max_connections, name=name, route=route
    )


def __getattr__(attr: str) -> Any:
    if attr == "ChatClient":
        from adapters.client import ChatClient

        return ChatClient
    raise AttributeError(f"module 'adapters' has no attribute {attr!r}")
