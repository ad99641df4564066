"""What every upstream adapter offers (`Provider`), and the HTTP plumbing they share.

A provider knows its upstream's address, credentials and wire format; it knows nothing of keys or
money. It is asked for an *operation* ("chat", "messages", ...) and maps it to its own URL; `send`
returns a parsed JSON body; `stream` returns an `EventStream` whose first event has already been
received, so that a failure before any output is still a plain error response. `sign` sees the
encoded body, for upstreams whose signature covers it (AWS SigV4).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import httpx
import orjson

from ..config import Settings
from ..errors import CLIENT_KINDS, GatewayError, UpstreamError, kind_for_upstream_status
from .pool import Opened, Pool, make_pool
from .sse import SSEReader

Event = dict[str, Any]
T = TypeVar("T")

# What a plan asks of a provider; each provider maps the ones it offers to its own paths.
Operation = Literal[
    "chat", "completions", "messages", "count_tokens", "responses", "embeddings", "images", "speech",
]


class Provider(Protocol):
    name: str

    def require_configured(self) -> None:
        """Raise a 502 naming the missing setting when the provider has no credentials."""

    async def send(self, operation: str, body: dict[str, Any], *, model: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]: ...

    async def stream(self, operation: str, body: dict[str, Any], *, model: str,
                     headers: dict[str, str] | None = None) -> EventStream: ...

    async def open_bytes(self, operation: str, body: dict[str, Any], *, model: str,
                         headers: dict[str, str] | None = None) -> ByteStream: ...

    async def aclose(self) -> None: ...


@dataclass
class ByteStream:
    """An upstream answer relayed as raw bytes (audio) as they arrive; close it when done."""

    media_type: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Any]


class EventStream:
    """Parsed upstream events; iterate it once, and close it (closing is idempotent)."""

    def __init__(self, first: Event | None, rest: AsyncIterator[Event], close: Callable[[], Any]) -> None:
        self._first = first
        self._rest = rest
        self._close = close
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        async for event in self._rest:
            yield event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        result = self._close()
        if asyncio.iscoroutine(result):
            await result


def upstream_error_message(status: int, body: bytes) -> str:
    """The upstream's own error message, for statuses whose message is the client's business."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
        message = message or data.get("message")
    return str(message or f"upstream answered HTTP {status}")


def raise_for_upstream(status: int, body: bytes, headers: Mapping[str, str] | None = None, provider: str = "") -> None:
    """Map an upstream error status to the caller-facing error (API.md section 1)."""
    kind = kind_for_upstream_status(status)
    extra: dict[str, str] = {}
    if kind in ("invalid_request", "not_found", "unprocessable", "request_too_large"):
        message = upstream_error_message(status, body)
    elif kind == "upstream_rate_limited":
        message = f"The {provider or 'upstream'} provider is rate limiting the gateway; retry later."
        retry = (headers or {}).get("retry-after")
        extra["Retry-After"] = retry if retry and retry.isdigit() else "1"
    elif status in (401, 403):
        message = f"The {provider or 'upstream'} provider rejected the gateway's credentials."
    else:
        message = f"The {provider or 'upstream'} provider failed (HTTP {status})."
    raise UpstreamError(kind, message, headers=extra, retryable=kind not in CLIENT_KINDS)


# What every upstream request carries besides the provider's own headers (credentials, versions).
_BASE_HEADERS = {"accept-encoding": "gzip, deflate", "user-agent": "llm-gateway"}


class HTTPProvider:
    """Shared upstream plumbing over one connection pool per provider per process (`pool.py`).

    A subclass names its operations' paths (`paths`), its URL rule (`url`), its credentials
    (`headers`) and, where its upstream needs one, a signature over the encoded body (`sign`).
    """

    name = "upstream"
    paths: dict[str, str] = {}
    # A channel's fields (catalog.channels.Channel) as the settings the class reads: a channel's
    # provider is the class made over the settings with these replaced (providers.Providers.for_channel).
    channel_settings: dict[str, str] = {}

    # whether the provider's own plain client (`client`) follows redirects
    follow_redirects = False

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.upstream_timeout
        self.transport = settings.http_transport
        self._pool: Pool | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = make_pool(self.transport, self.timeout)
        return self._pool

    @property
    def client(self) -> httpx.AsyncClient:
        """A plain httpx client of the provider's own, made on first use, for the rare calls that
        are not a POST through the pool (a GET of a task, a search, a stored response)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=self.follow_redirects,
                                             trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    def _request(self, operation: str, model: str, body: dict[str, Any], headers: dict[str, str] | None,
                 accept: str = "application/json") -> tuple[str, dict[str, str], bytes]:
        """The URL, headers and body of one upstream request."""
        url = self.url(self.path(operation), model)
        content, own = self.encode(body)
        merged = {**_BASE_HEADERS, "accept": accept, **self.headers(headers), **own}
        return url, self.sign(url, merged, content), content

    def encode(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The request body's bytes and the headers that describe them (JSON unless overridden).
        Copied out of orjson's result, which holds a 4 KB buffer however short the JSON, for as long
        as the request lives: a stream's whole length (measured: 4 KB of RSS per open stream)."""
        return bytes(memoryview(orjson.dumps(body))), {}

    def path(self, operation: str) -> str:
        path = self.paths.get(operation)
        if path is None:
            raise GatewayError("invalid_request", f"The {self.name} provider does not offer '{operation}'.")
        return path

    def require_configured(self) -> None:  # pragma: no cover - overridden
        """Raise a 502 naming the missing setting when the provider has no credentials."""

    def url(self, path: str, model: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def sign(self, url: str, headers: dict[str, str], content: bytes) -> dict[str, str]:
        """The headers to send, given the exact bytes of the body (a body-covering signature)."""
        return headers

    def check_event(self, event: Event) -> None:
        """Raise if an event is an in-stream error report."""

    def failure(self, exc: BaseException, when: str = "reach") -> GatewayError:
        """The one mapping of a transport failure to what the caller sees: a timeout is a 504, any
        other failure to connect, send or read a 502 (both retryable on another channel)."""
        if isinstance(exc, TimeoutError):
            return UpstreamError("upstream_timeout", f"The {self.name} provider did not answer in time.")
        if when == "stream":
            return UpstreamError("upstream_error", f"The {self.name} provider stream broke ({type(exc).__name__}).")
        return UpstreamError("upstream_error", f"Could not reach the {self.name} provider ({type(exc).__name__}).")

    async def send(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.require_configured()
        request = self._request(operation, model, body, headers)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.pool.post(*request)
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None
        return self.json_answer(answer.status, answer.content, answer.headers)

    def json_answer(self, status: int, content: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """A whole answer as the JSON object it must be: an error status mapped for the caller, an
        answer that is not a JSON object a 502."""
        if status >= 400:
            raise_for_upstream(status, content, headers, self.name)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream_error", f"The {self.name} provider sent an unreadable answer.") from None
        if not isinstance(data, dict):
            raise UpstreamError("upstream_error", f"The {self.name} provider sent an unexpected answer.")
        return data

    async def stream(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> EventStream:
        async def first_event(response: Opened) -> tuple[AsyncIterator[Event], Event | None]:
            events = self._events(response)
            return events, await anext(events, None)

        response, started = await self._open(operation, body, model, headers, "text/event-stream", first_event)
        assert started is not None  # `first_event` ran
        events, first = started
        return EventStream(first, events, response.aclose)

    async def open_bytes(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> ByteStream:
        """An answer of raw bytes (audio), its head received: errors before it are plain errors."""
        response, _ = await self._open(operation, body, model, headers, "*/*")
        media_type = response.headers.get("content-type", "application/octet-stream")
        return ByteStream(media_type, self._chunks(response), response.aclose)

    async def _open(
        self, operation: str, body: dict[str, Any], model: str, headers: dict[str, str] | None, accept: str,
        start: Callable[[Opened], Awaitable[T]] | None = None,
    ) -> tuple[Opened, T | None]:
        """The upstream's answer, unread past its head (and `start`'s first read of it), within the
        time limit; an error status or a failure before then is a plain error, the answer closed."""
        self.require_configured()
        request = self._request(operation, model, body, headers, accept=accept)
        response: Opened | None = None
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.pool.open(*request)
                if response.status_code >= 400:
                    content = await response.aread()
                    raise_for_upstream(response.status_code, content, response.headers, self.name)
                started = await start(response) if start is not None else None
        except BaseException as exc:
            if response is not None:
                await response.aclose()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise self.failure(exc) from None
            raise
        return response, started

    async def _chunks(self, response: Opened) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                if chunk:
                    yield chunk
        except (httpx.HTTPError, OSError) as exc:
            raise self.failure(exc, "stream") from None

    async def _events(self, response: Opened) -> AsyncIterator[Event]:
        """The JSON objects an SSE answer carries (its `event:` name as `type` where they have
        none); `[DONE]`, comments and anything that is not a JSON object are skipped."""
        reader = SSEReader()
        try:
            async for chunk in response.aiter_bytes():
                for name, data in reader.feed(chunk):
                    if not data or data == b"[DONE]":
                        continue
                    try:
                        event = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if name and "type" not in event:
                        event["type"] = name
                    self.check_event(event)
                    yield event
        except (httpx.HTTPError, OSError) as exc:
            raise self.failure(exc, "stream") from None


# What a failure to connect, send, read or answer in time raises, whichever pool serves.
TRANSPORT_ERRORS = (TimeoutError, httpx.HTTPError, OSError)


def missing(setting: str, provider: str) -> GatewayError:
    return UpstreamError(
        "upstream_error", f"The {provider} provider is not configured: set {setting} on the gateway."
    )
