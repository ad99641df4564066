"""What every upstream adapter offers, and the HTTP plumbing they share.

A provider knows its upstream's address, credentials and wire format; it knows nothing of keys or
money. `send` returns a parsed JSON body; `stream` returns an `EventStream` whose first event has
already been received, so that a failure before any output is still a plain error response.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator, Callable

import httpx
import orjson

from ..errors import GatewayError, kind_for_upstream_status

Event = dict[str, Any]


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


def raise_for_upstream(status: int, body: bytes, headers: httpx.Headers | None = None, provider: str = "") -> None:
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
    raise GatewayError(kind, message, headers=extra)


# What every upstream request carries besides the provider's own headers (credentials, versions).
_BASE_HEADERS = {"accept-encoding": "gzip, deflate", "user-agent": "llm-gateway"}


def _pooled_transport(choice: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """httpx's API over aiohttp's connection pool where that pays, else httpx's own (None).

    httpx's own pool re-checks every pooled connection on each request, which caps a busy
    long-running server at a few hundred upstream requests per second; aiohttp's pool does not.
    A Lambda container serves one request at a time, so there the lighter import wins.
    """
    if choice == "httpx" or (choice == "auto" and os.environ.get("AWS_LAMBDA_FUNCTION_NAME")):
        return None
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        return None
    return AiohttpTransport(limits=limits, trust_env=False)


class HTTPProvider:
    """Shared upstream plumbing: one pooled httpx transport per provider per process.

    Requests go to the transport directly: the gateway sets every header itself and needs none of
    httpx.AsyncClient's per-request work (cookies, auth flows, redirects, header merging), which
    cost about 150 µs per request at load.
    """

    name = "upstream"
    family = "openai"

    def __init__(self, timeout: float, transport: str = "auto") -> None:
        self.timeout = timeout
        self.transport = transport
        self._pool: httpx.AsyncBaseTransport | None = None
        self._urls: dict[tuple[str, str], httpx.URL] = {}
        self._timeouts = {"connect": timeout, "read": None, "write": timeout, "pool": timeout}

    @property
    def pool(self) -> httpx.AsyncBaseTransport:
        if self._pool is None:
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=60)
            self._pool = _pooled_transport(self.transport, limits) or httpx.AsyncHTTPTransport(
                limits=limits, trust_env=False, retries=0
            )
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    def _request(self, path: str, model: str, body: dict[str, Any], headers: dict[str, str] | None,
                 accept: str = "application/json") -> httpx.Request:
        return httpx.Request(
            "POST",
            self._url(path, model),
            headers={**_BASE_HEADERS, "accept": accept, **self.headers(headers)},
            content=orjson.dumps(body),
            extensions={"timeout": self._timeouts},
        )

    def require_configured(self) -> None:  # pragma: no cover - overridden
        """Raise a 502 naming the missing setting when the provider has no credentials."""

    def url(self, path: str, model: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _url(self, path: str, model: str) -> httpx.URL:
        """The parsed upstream URL, parsed once: httpx re-parses a string URL on every request."""
        key = (path, model)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 1024:
                self._urls.clear()
            url = self._urls[key] = httpx.URL(self.url(path, model))
        return url

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def check_event(self, event: Event) -> None:
        """Raise if an event is an in-stream error report."""

    async def send(
        self, path: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.require_configured()
        request = self._request(path, model, body, headers)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.pool.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except TimeoutError:
            raise GatewayError("upstream_timeout", f"The {self.name} provider did not answer in time.") from None
        except (httpx.HTTPError, OSError) as exc:
            raise GatewayError("upstream_error", f"Could not reach the {self.name} provider ({type(exc).__name__}).") from None
        if response.status_code >= 400:
            raise_for_upstream(response.status_code, response.content, response.headers, self.name)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise GatewayError("upstream_error", f"The {self.name} provider sent an unreadable answer.") from None
        if not isinstance(data, dict):
            raise GatewayError("upstream_error", f"The {self.name} provider sent an unexpected answer.")
        return data

    async def stream(
        self, path: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> EventStream:
        from httpx_sse import EventSource

        self.require_configured()
        request = self._request(path, model, body, headers, accept="text/event-stream")
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.pool.handle_async_request(request)
                if response.status_code >= 400:
                    content = await response.aread()
                    await response.aclose()
                    raise_for_upstream(response.status_code, content, response.headers, self.name)
                events = self._events(EventSource(response))
                first = await anext(events, None)
        except TimeoutError:
            if response is not None:
                await response.aclose()
            raise GatewayError("upstream_timeout", f"The {self.name} provider did not answer in time.") from None
        except (httpx.HTTPError, OSError) as exc:
            if response is not None:
                await response.aclose()
            raise GatewayError("upstream_error", f"Could not reach the {self.name} provider ({type(exc).__name__}).") from None
        except GatewayError:
            if response is not None:
                await response.aclose()
            raise
        return EventStream(first, events, response.aclose)

    async def _events(self, source: Any) -> AsyncIterator[Event]:
        try:
            async for sse in source.aiter_sse():
                data = sse.data
                if not data or data == "[DONE]":
                    continue
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(event, dict):
                    continue
                if sse.event and "type" not in event:
                    event["type"] = sse.event
                self.check_event(event)
                yield event
        except (httpx.HTTPError, OSError) as exc:
            raise GatewayError("upstream_error", f"The {self.name} provider stream broke ({type(exc).__name__}).") from None


def missing(setting: str, provider: str) -> GatewayError:
    return GatewayError(
        "upstream_error", f"The {provider} provider is not configured: set {setting} on the gateway."
    )
