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
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Protocol

import aiohttp
import anyio
from yarl import URL

from adapters import anthropic, gemini, hosts, openai
from core.calls import ChatRequest, ChatResult, HostRoute, ProviderName
from core.errors import CommitteeError, ConfigError, Retryable

ADAPTERS: dict[str, ModuleType] = {"openai": openai, "gemini": gemini, "anthropic": anthropic}
# No chat answer comes near this; a body past it is a misbehaving server, not an answer.
MAX_BODY_BYTES = 8 * 2**20
# Share of an attempt's timeout that getting a connection (pooled or new) may take;
# see `ChatClient._timeout`.
_CONNECT_SHARE = 0.9

log = logging.getLogger(__name__)


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
        raise ConfigError(f"unknown provider {provider!r}; use one of: {', '.join(sorted(ADAPTERS))}") from None


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


def redacted(exc: CommitteeError, secret: str) -> CommitteeError:
    """`exc` with every occurrence of `secret` in its message replaced by `***`."""
    # Some providers echo part of a bad key in 401 bodies; ours never leaves this process.
    # Same class and fields, only the text changes.
    clean = type(exc).__new__(type(exc))
    clean.__dict__.update(exc.__dict__)
    clean.reason = str(exc).replace(secret, "***")  # type: ignore[attr-defined]
    clean.args = (clean.reason,)  # type: ignore[attr-defined]
    return clean


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, refused past MAX_BODY_BYTES before it is all in memory."""
    length = response.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _too_large(response.status, f"{length} bytes announced")
    if length is not None:
        return await response.read()
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(response.status, f"over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, what: str) -> Retryable:
    # A 2xx this big still ran the model: possibly billed.
    return Retryable(
        f"response body too large ({what}; limit {MAX_BODY_BYTES // 2**20} MiB), HTTP {status}",
        possibly_billed=200 <= status < 300,
        http_status=status,
    )


def transport_error(
    exc: asyncio.TimeoutError | aiohttp.ClientError, base_url: str, timeout_s: float, connect_s: float | None = None
) -> Retryable:
    """The Retryable for an HTTP exchange with `base_url` that broke before a whole response came back.

    Once the request may have reached the provider, its model may have run and been
    billed although we never saw the answer: those attempts are possibly billed.
    Before a connection was had, nothing was sent: aiohttp's ConnectionTimeoutError
    is also an asyncio.TimeoutError, so it is told apart first. `connect_s`: the connect
    limit when it is not `ChatClient`'s share of `timeout_s`.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        connect_s = timeout_s * _CONNECT_SHARE if connect_s is None else connect_s
        return Retryable(f"no connection to {base_url} within {connect_s:g}s (connecting or waiting for a pooled one)")
    if isinstance(exc, asyncio.TimeoutError):
        return Retryable(f"timeout after {timeout_s:g}s", possibly_billed=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Retryable(f"cannot connect to {base_url} ({_connect_failure(exc)})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Retryable(f"connection to {base_url} closed before a response", possibly_billed=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Retryable(f"connection to {base_url} broke while reading the response", possibly_billed=True)
    if isinstance(exc, aiohttp.ClientOSError):
        return Retryable(
            f"connection to {base_url} failed ({exc.strerror or type(exc).__name__})", possibly_billed=True
        )
    return Retryable(f"HTTP exchange with {base_url} failed ({type(exc).__name__})", possibly_billed=True)


class ChatClient:
    """One provider endpoint and key: a connection pool and `complete()`.

    Use it as an async context manager (the session must be made inside the event
    loop that uses it). The API key is held but never shown: not in `repr`, logs or
    exception text.
    """

    __slots__ = (
        "_adapter",
        "_api_key",
        "_route",
        "_session",
        "_timeouts",
        "_urls",
        "base_url",
        "max_connections",
        "name",
        "provider",
    )

    def __init__(
        self,
        provider: ProviderName,
        *,
        api_key: str,
        base_url: str | None = None,
        max_connections: int = 64,
        name: str = "",
        route: HostRoute | None = None,
    ) -> None:
        self._adapter = adapter_for(provider)
        self.provider = provider
        self.name = name or provider
        # Only the OpenAI wire has hosts other than the provider's own.
        self._route = route if route is not None and provider == "openai" else None
        default = hosts.HOSTS[self._route.host].default_base_url if self._route else None
        self.base_url = (base_url or default or self._adapter.DEFAULT_BASE_URL).rstrip("/")
        self.max_connections = max_connections
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None
        url = URL(self.base_url)
        if api_key and url.scheme == "http" and not _is_loopback(url.host):
            log.warning(
                "teacher %r: its API key is sent unencrypted over plain http:// to %s; use https://",
                self.name,
                url.host,
            )
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
            headers=self._headers(),
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

    def _headers(self) -> dict[str, str]:
        if self._route is not None:
            return hosts.auth_headers(self._route, self._api_key)
        return self._adapter.headers(self._api_key)

    def _url(self, model: str) -> URL:
        url = self._urls.get(model)
        if url is None:
            text = (
                hosts.chat_url(self._route, self.base_url)
                if self._route is not None
                else self._adapter.url(self.base_url, model)
            )
            # A host's URL is quoted already (Azure's deployment and api-version).
            url = self._urls[model] = URL(text, encoded=self._route is not None)
        return url

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            # `total` alone also times the wait for a pooled connection and the connect,
            # and then raises a bare TimeoutError, indistinguishable from a request that
            # reached the provider. A `connect` limit just under it fires first there as
            # aiohttp's ConnectionTimeoutError: an attempt that never left, never billed.
            # (aiohttp rounds timeouts of 5 s and more up to whole seconds, so under
            # 10 s the two may coincide; the attempt is then booked as possibly billed.)
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(
                total=timeout_s, connect=timeout_s * _CONNECT_SHARE
            )
        return timeout

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        """Send `request` once and return the provider's answer.

        `timeout_s` covers the whole attempt, including waiting for a free pooled
        connection, so keep calls in flight at or under `max_connections`; an attempt
        that got no connection within 90 % of it fails unsent (not possibly billed).
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
                raw = await _read_body(response)
                status, headers = response.status, response.headers
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc, self.base_url, timeout_s) from None
        try:
            return adapter.decode(status, headers, raw, time.monotonic() - start)
        except CommitteeError as exc:
            if self._api_key and self._api_key in str(exc):
                raise redacted(exc, self._api_key) from None
            raise
