"""Response helpers: fast JSON, family-shaped errors, and the streaming response for SSE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Send

from ..errors import Family, GatewayError


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def platform_ok(data: Any, message: str = "success") -> Response:
    """A platform route's success (API.md section 1): `{statusCode: 200, message, data}`."""
    return JSON({"statusCode": 200, "message": message, "data": data})


def error_response(err: GatewayError, family: Family, request_id: str | None = None) -> Response:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSON(err.body(family), status_code=err.status, headers=headers)


class EventStreamResponse(StreamingResponse):
    """SSE out, chunk by chunk, with comment keep-alives during long upstream pauses.

    The keep-alives (`: keep-alive`) stop idle-connection cuts between the client and the gateway
    (API Gateway and load balancers drop quiet connections); SSE parsers ignore comments. The body
    generator is always closed, even when the client leaves: closing it runs its `finally`, which is
    where a stream settles its charge, so a client that disconnects is charged for what was
    produced, never for more, never twice.
    """

    media_type = "text/event-stream"
    keepalive_body = b": keep-alive\n\n"

    def __init__(
        self, content: AsyncIterator[bytes], headers: dict[str, str] | None = None, keepalive: float = 15.0
    ) -> None:
        base = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(content, headers={**base, **(headers or {})})
        self.keepalive = keepalive

    async def stream_response(self, send: Send) -> None:
        lock = asyncio.Lock()
        last_sent = [time.monotonic()]

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(max(self.keepalive - (time.monotonic() - last_sent[0]), 0.01))
                if time.monotonic() - last_sent[0] >= self.keepalive:
                    async with lock:
                        await send({"type": "http.response.body", "body": self.keepalive_body, "more_body": True})
                        last_sent[0] = time.monotonic()

        beat: asyncio.Task | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.keepalive > 0:
                beat = asyncio.create_task(heartbeat())
            async for chunk in self.body_iterator:
                async with lock:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                last_sent[0] = time.monotonic()
            if beat is not None:
                beat.cancel()
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if beat is not None:
                beat.cancel()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                # Shielded: when the client left, this task is being cancelled, and the close must
                # still run to completion so the generator settles.
                await asyncio.shield(close())
