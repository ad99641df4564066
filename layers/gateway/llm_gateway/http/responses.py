"""Response helpers: fast JSON, family-shaped errors, and the streaming response for SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

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

    A worker carries thousands of these at once, so each costs as little as it can: the stream runs
    in the request's own task, one small task waits for the client to leave (and cancels the
    stream), and the keep-alive is a timer, not a task (Starlette's version adds a task group and a
    second task per stream: about 8 KB each, measured by bench/long_streams.py).
    """

    media_type = "text/event-stream"
    keepalive_body = b": keep-alive\n\n"

    def __init__(
        self, content: AsyncIterator[bytes], headers: dict[str, str] | None = None, keepalive: float = 15.0
    ) -> None:
        base = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(content, headers={**base, **(headers or {})})
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            if streaming is not None:
                streaming.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not left or streaming is None:
                raise
            streaming.uncancel()  # the client left: the stream ended, and so does this request
        finally:
            watcher.cancel()

    async def stream_response(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()  # held while a keep-alive goes out; the last message waits for it
        last_sent = loop.time()
        timer: asyncio.TimerHandle | None = None
        beats: set[asyncio.Task] = set()

        async def beat() -> None:
            nonlocal last_sent
            async with lock:
                await send({"type": "http.response.body", "body": self.keepalive_body, "more_body": True})
                last_sent = loop.time()

        def due() -> None:
            nonlocal timer
            idle = loop.time() - last_sent
            if idle >= self.keepalive:
                task = loop.create_task(beat())
                beats.add(task)
                task.add_done_callback(beats.discard)
                idle = 0.0
            timer = loop.call_later(self.keepalive - idle, due)

        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.keepalive > 0:
                timer = loop.call_later(self.keepalive, due)
            async for chunk in self.body_iterator:
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                if lock.locked():  # a keep-alive is on its way out: this chunk goes after it
                    async with lock:
                        await send(message)
                else:  # each send writes a whole event, so one beside a keep-alive cannot tear it
                    await send(message)
                last_sent = loop.time()
            if timer is not None:
                timer.cancel()
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if timer is not None:
                timer.cancel()
            for task in beats:
                task.cancel()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                # Shielded: when the client left, this task is being cancelled, and the close must
                # still run to completion so the generator settles.
                await asyncio.shield(close())
