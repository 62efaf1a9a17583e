"""One HTTP attempt at a chat completion, over a pooled aiohttp session per provider endpoint.

`ChatClient` owns one `aiohttp.ClientSession` whose connector keeps up to
`max_connections` keep-alive connections; `complete()` sends one request and
returns a `ChatResult` or raises `Retryable` / `Permanent`. Retries, waiting and
rate limits belong to engine/lane.py.

    async with ChatClient("openai", api_key=key, base_url="http://127.0.0.1:8000/v1") as client:
        result = await client.complete(request, timeout_s=60)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Protocol

import aiohttp
import anyio
from yarl import URL

from adapters import anthropic, gemini, openai
from adapters.base import ChatRequest, ChatResult, ProviderName
from engine.errors import CommitteeError, ConfigError, Permanent, Retryable

ADAPTERS: dict[str, ModuleType] = {"openai": openai, "gemini": gemini, "anthropic": anthropic}


class Adapter(Protocol):
    """What every module in adapters/ provides (openai, gemini, anthropic)."""

    DEFAULT_BASE_URL: str

    def encode(self, request: ChatRequest) -> bytes: ...
    def url(self, base_url: str, model: str) -> str: ...
    def headers(self, api_key: str) -> dict[str, str]: ...
    def decode(self, status: int, headers: Mapping[str, str], body: bytes, latency_s: float) -> ChatResult: ...


def adapter_for(provider: str) -> Adapter:
    """The wire module of `provider`; ConfigError naming it when there is none."""
    try:
        return ADAPTERS[provider]  # type: ignore[return-value]
    except KeyError:
        raise ConfigError(
            f"unknown provider {provider!r}; use one of: {', '.join(sorted(ADAPTERS))}"
        ) from None


def _connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    cause = exc.os_error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "host name not resolved"
    if isinstance(cause, (ssl.SSLError, ssl.CertificateError)):
        return "TLS handshake failed"
    if isinstance(cause, asyncio.TimeoutError):
        return "connect timed out"
    return cause.strerror or type(cause).__name__


def _redacted(exc: CommitteeError, secret: str) -> CommitteeError:
    # Some providers echo part of a bad key in 401 bodies; ours never leaves this process.
    reason = str(exc).replace(secret, "***")
    if isinstance(exc, Retryable):
        return Retryable(reason, after_s=exc.after_s, rate_limited=exc.rate_limited)
    return Permanent(reason)


class ChatClient:
    """One provider endpoint and key: a connection pool and `complete()`.

    Use it as an async context manager (the session must be made inside the event
    loop that uses it). The API key is held but never shown: not in `repr`, logs or
    exception text.
    """

    __slots__ = ("provider", "name", "base_url", "max_connections", "_adapter", "_api_key", "_session",
                 "_urls", "_timeouts")

    def __init__(
        self,
        provider: ProviderName,
        *,
        api_key: str,
        base_url: str | None = None,
        max_connections: int = 64,
        name: str = "",
    ) -> None:
        self._adapter = adapter_for(provider)
        self.provider = provider
        self.name = name or provider
        self.base_url = (base_url or self._adapter.DEFAULT_BASE_URL).rstrip("/")
        self.max_connections = max_connections
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None
        # Built once per model and per timeout: yarl parsing is a visible cost at 2,000 req/s.
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        return (
            f"ChatClient({self.provider!r}, name={self.name!r}, base_url={self.base_url!r}, "
            f"max_connections={self.max_connections})"
        )

    async def __aenter__(self) -> ChatClient:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._adapter.headers(self._api_key),
            # Providers need no cookies, and skipping the jar saves real time per request.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._session.close()
            self._session = None

    def _url(self, model: str) -> URL:
        url = self._urls.get(model)
        if url is None:
            url = self._urls[model] = URL(self._adapter.url(self.base_url, model))
        return url

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        return timeout

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        """Send `request` once and return the provider's answer.

        `timeout_s` covers the whole attempt, including waiting for a free pooled
        connection, so keep calls in flight at or under `max_connections`.
        Raises `Retryable` (timeout, connection refused or lost, 408/409/429/5xx,
        garbled body) or `Permanent` (other 4xx, refusal); cancellation propagates.
        """
        session = self._session
        if session is None:
            raise RuntimeError(f"{self!r} used outside `async with`")
        adapter = self._adapter
        body = adapter.encode(request)
        start = time.monotonic()
        try:
            async with session.post(
                self._url(request.model), data=body, timeout=self._timeout(timeout_s), allow_redirects=False
            ) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except asyncio.TimeoutError:
            raise Retryable(f"timeout after {timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise Retryable(f"cannot connect to {self.base_url} ({_connect_failure(exc)})") from None
        except aiohttp.ServerDisconnectedError:
            raise Retryable(f"connection to {self.base_url} closed before a response") from None
        except aiohttp.ClientPayloadError:
            raise Retryable(f"connection to {self.base_url} broke while reading the response") from None
        except aiohttp.ClientOSError as exc:
            raise Retryable(f"connection to {self.base_url} failed ({exc.strerror or type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise Retryable(f"HTTP exchange with {self.base_url} failed ({type(exc).__name__})") from None
        try:
            return adapter.decode(status, headers, raw, time.monotonic() - start)
        except CommitteeError as exc:
            if self._api_key and self._api_key in str(exc):
                raise _redacted(exc, self._api_key) from None
            raise
