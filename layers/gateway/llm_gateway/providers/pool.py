"""The connection pool every provider reaches its upstream through, one per provider per process.

Two kinds behind one interface:
- `post` sends a request and returns its whole answer (status, headers, body);
- `open` sends a request and returns the answer unread, as an `httpx.Response`, which httpx-sse
  parses into events.

`AiohttpPool` (the `speed` extra) is aiohttp's pool. httpx's own re-checks every pooled connection on
each request, which caps a busy long-running server at a few hundred upstream requests per second.
Whole answers go through aiohttp itself: httpx's request and response types over the same pool cost
about 90 µs more per request, some 13% of the gateway's CPU at load. Streams go through httpx-aiohttp
over the same session, so both kinds of call share its connections.

`HttpxPool` is httpx's own. A Lambda container serves one request at a time, so there the lighter
import wins.

Both raise httpx's exceptions (`httpx.TransportError`) for a failure to connect, send or read, so a
provider handles one set of errors whichever pool it has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import httpx

# Connections to one upstream: enough for a busy server; idle ones are kept for a minute.
MAX_CONNECTIONS = 1000
MAX_IDLE_CONNECTIONS = 100
IDLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


class Pool(Protocol):
    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer: ...
    async def open(self, url: str, headers: dict[str, str], content: bytes) -> httpx.Response: ...
    async def aclose(self) -> None: ...


def make_pool(choice: str, timeout: float) -> Pool:
    """`choice`: "httpx", "aiohttp" or "auto" (aiohttp where installed, but httpx on Lambda)."""
    if choice == "httpx" or (choice == "auto" and os.environ.get("AWS_LAMBDA_FUNCTION_NAME")):
        return HttpxPool(timeout)
    try:
        import aiohttp  # noqa: F401
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return HttpxPool(timeout)
    return AiohttpPool(timeout)


class _URLs:
    """Parsed URLs by their text: each library would otherwise parse the same URL on every request."""

    def __init__(self, parse: Callable[[str], Any]) -> None:
        self._parse = parse
        self._parsed: dict[str, Any] = {}

    def __call__(self, url: str) -> Any:
        parsed = self._parsed.get(url)
        if parsed is None:
            if len(self._parsed) > 1024:
                self._parsed.clear()
            parsed = self._parsed[url] = self._parse(url)
        return parsed


class HttpxPool:
    """httpx's own pool, driven at the transport: the gateway sets every header itself and needs
    none of httpx.AsyncClient's per-request work (cookies, auth flows, redirects, header merging)."""

    def __init__(self, timeout: float) -> None:
        self._transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_IDLE_CONNECTIONS,
                                keepalive_expiry=IDLE_SECONDS),
            trust_env=False,
            retries=0,
        )
        self._timeouts = {"connect": timeout, "read": None, "write": timeout, "pool": timeout}
        self._url = _URLs(httpx.URL)

    async def open(self, url: str, headers: dict[str, str], content: bytes) -> httpx.Response:
        request = httpx.Request("POST", self._url(url), headers=headers, content=content,
                                extensions={"timeout": self._timeouts})
        return await self._transport.handle_async_request(request)

    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer:
        response = await self.open(url, headers, content)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._transport.aclose()


class AiohttpPool:
    """aiohttp's pool: whole answers through aiohttp, streams through httpx-aiohttp, one session."""

    def __init__(self, timeout: float) -> None:
        import aiohttp
        import yarl

        self._aiohttp = aiohttp
        self._connect_timeout = timeout
        self._session: Any = None
        self._transport: Any = None
        self._url = _URLs(yarl.URL)
        self._httpx_url = _URLs(httpx.URL)

    def _started(self) -> Any:
        """The session, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None:
            from httpx_aiohttp import AiohttpTransport

            aiohttp = self._aiohttp
            # The same certificate authorities as httpx (certifi's), whichever pool serves. No total
            # time limit: the provider bounds the wait for an answer; a stream has none.
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=IDLE_SECONDS,
                                             ssl=httpx.create_ssl_context(trust_env=False))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
            )
            self._transport = AiohttpTransport(client=self._session)
        return self._session

    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer:
        session = self._started()
        try:
            async with session.post(self._url(url), headers=headers, data=content, allow_redirects=False) as response:
                return Answer(response.status, response.headers, await response.read())
        except self._aiohttp.ClientError as exc:
            raise self._as_httpx(exc) from exc

    async def open(self, url: str, headers: dict[str, str], content: bytes) -> httpx.Response:
        self._started()
        request = httpx.Request("POST", self._httpx_url(url), headers=headers, content=content, extensions={
            "timeout": {"connect": self._connect_timeout, "pool": self._connect_timeout},
        })
        try:
            return await self._transport.handle_async_request(request)
        except self._aiohttp.ClientError as exc:  # what httpx-aiohttp leaves unmapped
            raise self._as_httpx(exc) from exc

    def _as_httpx(self, exc: Exception) -> httpx.TransportError:
        aiohttp = self._aiohttp
        if isinstance(exc, aiohttp.ClientConnectorError):
            return httpx.ConnectError(str(exc))
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return httpx.ReadTimeout(str(exc))
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
            return httpx.ReadError(str(exc))
        return httpx.RemoteProtocolError(str(exc))  # e.g. an answer that is not HTTP

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
