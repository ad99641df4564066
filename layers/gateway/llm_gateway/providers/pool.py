"""The connection pool every provider reaches its upstream through, one per provider per process.

Two kinds behind one interface:
- `post` sends a request and returns its whole answer (status, headers, body);
- `open` sends a request and returns the answer unread past its head (`Opened`: status, headers,
  its bytes as they arrive), which the provider reads as events (providers.sse) or bytes.

`AiohttpPool` (the `speed` extra) is aiohttp's pool. httpx's own re-checks every pooled connection on
each request, which caps a busy long-running server at a few hundred upstream requests per second.
Whole answers go through aiohttp itself: httpx's request and response types over the same pool cost
about 90 µs more per request, some 13% of the gateway's CPU at load. Streams too: each chunk of a
stream read through httpx's response types over aiohttp (httpx-aiohttp) cost several µs more, and
each open stream kilobytes more, than aiohttp's own reads (bench/long_streams.py).

`HttpxPool` is httpx's own. A Lambda container serves one request at a time, so there the lighter
import wins.

Both raise httpx's exceptions (`httpx.TransportError`) for a failure to connect, send or read, so a
provider handles one set of errors whichever pool it has.

A pooled connection can have been closed by the upstream just as a request is sent on it (a server
dropping a keep-alive connection after an error, or an idle one). Both pools then send the request
once more, on a new connection that is used for nothing else, as Go's net/http and browsers do: only
when the connection was a reused one and nothing of an answer had arrived, never for a timeout, and
at most once. Nothing of this runs on a request that succeeds: the pools only note, where a new
connection is opened, that the running task opened one (`_opened`), and read that after a failure.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

# Connections open at once (every upstream together): each stream holds one for its whole length, so
# this bounds the streams one worker relays at a time; a stream past it waits for a free connection.
# Idle ones are kept for a minute.
MAX_CONNECTIONS = int(os.environ.get("GATEWAY_UPSTREAM_MAX_CONNECTIONS") or 10_000)
MAX_IDLE_CONNECTIONS = 100
IDLE_SECONDS = 60.0

# Set in the task that opens a new upstream connection, never where a pooled one is reused; read
# only after a failure. Unset there means the failed request ran on a reused connection. Each call
# the gateway serves runs in a task of its own; a task that made an earlier call which opened a
# connection has it set for good, which can only withhold a retry, never cause one.
_opened: ContextVar[bool] = ContextVar("llm_gateway_opened_upstream_connection", default=False)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


class Opened(Protocol):
    """An answer unread past its head (an httpx.Response is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # case-insensitive

    async def aread(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Pool(Protocol):
    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer: ...
    async def open(self, url: str, headers: dict[str, str], content: bytes) -> Opened: ...
    async def aclose(self) -> None: ...


def make_pool(choice: str, timeout: float) -> Pool:
    """`choice`: "httpx", "aiohttp" or "auto" (aiohttp where installed, but httpx on Lambda)."""
    if choice == "httpx" or (choice == "auto" and os.environ.get("AWS_LAMBDA_FUNCTION_NAME")):
        return HttpxPool(timeout)
    try:
        import aiohttp  # noqa: F401
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
        import httpcore

        self._ssl = httpx.create_ssl_context(trust_env=False)
        self._transport = httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False, retries=0)
        # httpx's transport, over an httpcore pool whose network backend notes each connection it
        # opens (httpx has no argument for the backend, so its pool is replaced before any use).
        self._transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_IDLE_CONNECTIONS,
            keepalive_expiry=IDLE_SECONDS, retries=0,
            network_backend=_noting_backend(httpcore)(httpcore.AnyIOBackend()),
        )
        self._fresh: httpx.AsyncHTTPTransport | None = None  # for resending: no connection is kept
        self._timeouts = {"connect": timeout, "read": None, "write": timeout, "pool": timeout}
        self._url = _URLs(httpx.URL)

    async def open(self, url: str, headers: dict[str, str], content: bytes) -> Opened:
        request = httpx.Request("POST", self._url(url), headers=headers, content=content,
                                extensions={"timeout": self._timeouts})
        try:
            return await self._transport.handle_async_request(request)
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if not self._dropped(exc):
                raise
        if self._fresh is None:
            self._fresh = httpx.AsyncHTTPTransport(
                verify=self._ssl, trust_env=False, retries=0,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=0),
            )
        return await self._fresh.handle_async_request(request)

    @staticmethod
    def _dropped(exc: httpx.TransportError) -> bool:
        """Whether a reused connection was closed under the request before any answer arrived.

        httpcore says "Server disconnected without sending a response." for an end of stream before
        an answer's head, and a ReadError for a reset (a request sent onto a socket the upstream had
        already closed). Its message does not tell whether part of an answer's head had arrived;
        an upstream that starts an answer does not usually stop inside its status line and headers.
        """
        if _opened.get():
            return False
        if isinstance(exc, httpx.RemoteProtocolError):
            return "without sending a response" in str(exc)
        return isinstance(exc, httpx.ReadError)

    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer:
        response = await self.open(url, headers, content)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, body)

    async def aclose(self) -> None:
        await self._transport.aclose()
        if self._fresh is not None:
            fresh, self._fresh = self._fresh, None
            await fresh.aclose()


class AiohttpPool:
    """aiohttp's pool: whole answers and streams through aiohttp itself, one session."""

    def __init__(self, timeout: float) -> None:
        import aiohttp
        import yarl

        self._aiohttp = aiohttp
        self._connect_timeout = timeout
        self._session: Any = None
        self._fresh_session: Any = None  # for resending: a connection of its own for each request
        self._url = _URLs(yarl.URL)

    def _started(self) -> Any:
        """The session, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None:
            self._session = self._new_session(_noting_connector(self._aiohttp), keepalive_timeout=IDLE_SECONDS)
        return self._session

    def _fresh(self) -> Any:
        """The session that resends a request: no connection is ever kept."""
        if self._fresh_session is None:
            self._fresh_session = self._new_session(self._aiohttp.TCPConnector, force_close=True)
        return self._fresh_session

    def _new_session(self, connector_class: Any, **connector_args: Any) -> Any:
        aiohttp = self._aiohttp
        # The same certificate authorities as httpx (certifi's), whichever pool serves. No total
        # time limit: the provider bounds the wait for an answer; a stream has none.
        connector = connector_class(limit=MAX_CONNECTIONS, ssl=httpx.create_ssl_context(trust_env=False),
                                    **connector_args)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
        )

    async def _send(self, url: str, headers: dict[str, str], content: bytes) -> Any:
        """The answer's head, resent once on a fresh connection if a reused one was found dropped."""
        try:
            return await self._started().post(self._url(url), headers=headers, data=content, allow_redirects=False)
        except self._aiohttp.ClientError as exc:
            if not self._dropped(exc):
                raise
        return await self._fresh().post(self._url(url), headers=headers, data=content, allow_redirects=False)

    async def post(self, url: str, headers: dict[str, str], content: bytes) -> Answer:
        try:
            response = await self._send(url, headers, content)
            # From here on part of the answer has arrived: a failure is never resent.
            async with response:
                return Answer(response.status, response.headers, await response.read())
        except self._aiohttp.ClientError as exc:
            raise self._as_httpx(exc) from exc

    async def open(self, url: str, headers: dict[str, str], content: bytes) -> Opened:
        try:
            return _AiohttpOpened(await self._send(url, headers, content), self)
        except self._aiohttp.ClientError as exc:
            raise self._as_httpx(exc) from exc

    def _dropped(self, exc: Exception) -> bool:
        """Whether a reused connection was closed under the request before any answer arrived.

        aiohttp reports an end of stream as ServerDisconnectedError, whose message is the part of an
        answer's head received, if any; a reset as ClientOSError (or ClientConnectionResetError when
        the socket was already closing as the request was written). A failure to connect, or a
        timeout, is neither.
        """
        aiohttp = self._aiohttp
        if _opened.get():
            return False
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return isinstance(exc.message, str)  # otherwise the answer's head had begun
        if isinstance(exc, aiohttp.ClientConnectorError):
            return False
        if isinstance(exc, aiohttp.ClientOSError):
            return exc.errno != errno.ETIMEDOUT
        return isinstance(exc, aiohttp.ClientConnectionResetError)

    def _as_httpx(self, exc: Exception) -> httpx.TransportError:
        aiohttp = self._aiohttp
        if isinstance(exc, aiohttp.ClientConnectorError):
            return httpx.ConnectError(str(exc))
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(str(exc))
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return httpx.ReadTimeout(str(exc))
        if isinstance(exc, aiohttp.ClientConnectionResetError):  # written onto a closing connection
            return httpx.WriteError(str(exc))
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
            return httpx.ReadError(str(exc))
        return httpx.RemoteProtocolError(str(exc))  # e.g. an answer that is not HTTP, or none at all

    async def aclose(self) -> None:
        for name in ("_session", "_fresh_session"):
            session = getattr(self, name)
            if session is not None:
                setattr(self, name, None)
                await session.close()


class _AiohttpOpened:
    """An aiohttp answer unread past its head, read as `Opened` (httpx's errors, as the pool's)."""

    __slots__ = ("_response", "_pool", "status_code", "headers")

    def __init__(self, response: Any, pool: AiohttpPool) -> None:
        self._response = response
        self._pool = pool
        self.status_code: int = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aread(self) -> bytes:
        try:
            data: bytes = await self._response.read()
            return data
        except self._pool._aiohttp.ClientError as exc:
            raise self._pool._as_httpx(exc) from exc

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except self._pool._aiohttp.ClientError as exc:
            raise self._pool._as_httpx(exc) from exc

    async def aclose(self) -> None:
        # read to its end, the connection goes back to the pool; otherwise it is closed
        self._response.release() if self._response.content.at_eof() else self._response.close()


_classes: dict[str, Any] = {}


def _noting_connector(aiohttp: Any) -> Any:
    """aiohttp's TCPConnector, noting in `_opened` each connection it opens (a new one, not a
    reused one: `_create_connection` is the hook aiohttp's own connectors implement)."""
    cls = _classes.get("connector")
    if cls is None:
        class NotingConnector(aiohttp.TCPConnector):
            async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
                _opened.set(True)
                return await super()._create_connection(req, traces, timeout)

        cls = _classes["connector"] = NotingConnector
    return cls


def _noting_backend(httpcore: Any) -> Any:
    """An httpcore network backend that notes in `_opened` each connection it opens."""
    cls = _classes.get("backend")
    if cls is None:
        class NotingBackend(httpcore.AsyncNetworkBackend):
            def __init__(self, backend: Any) -> None:
                self._backend = backend

            async def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
                _opened.set(True)
                return await self._backend.connect_tcp(*args, **kwargs)

            async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
                _opened.set(True)
                return await self._backend.connect_unix_socket(*args, **kwargs)

            async def sleep(self, seconds: float) -> None:
                await self._backend.sleep(seconds)

        cls = _classes["backend"] = NotingBackend
    return cls
