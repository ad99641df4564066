"""Response helpers: fast JSON, family-shaped errors, and the streaming response for SSE."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

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
    """SSE out, chunk by chunk; the body generator is always closed, even when the client leaves.

    Closing the generator runs its `finally`, which is where a stream settles its charge: a client
    that disconnects mid-stream is charged for what was produced, never for more, never twice.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        base = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(content, headers={**base, **(headers or {})})

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                # Shielded: when the client left, this task is being cancelled, and the close must
                # still run to completion so the generator settles.
                await asyncio.shield(close())
