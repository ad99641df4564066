"""A fake OpenAI upstream on raw asyncio sockets, for failures a framework server cannot produce.

It speaks HTTP/1.1 keep-alive by hand (Content-Length bodies both ways), so a test decides exactly
what goes on the wire and when the socket closes. Behaviour per upstream model id, in `behaviors`:
  "close_after_500"  answer a 500 with a JSON error body and a Content-Length, then close the socket
                     without a `Connection: close` header (a server dropping a keep-alive connection
                     right after an error, as some proxies and load balancers do)
  bytes              send these bytes (a cut-short answer), then close the socket
Any other model gets a normal chat completion (or an SSE stream when the body asks for one) with
usage 11 prompt + 7 completion tokens, and the connection stays open.

Every request read whole is recorded in `received` (its JSON body); a request that arrives on a
connection the fake is closing is never read, so it is not recorded: it never reached the upstream.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
TEXT = "Hello from the raw upstream"


def _response(status: int, reason: str, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def _completion(model: str) -> bytes:
    return _response(200, "OK", "application/json", json.dumps({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": USAGE,
    }).encode())


def _stream(model: str) -> bytes:
    def chunk(delta: dict | None, finish: str | None = None, usage: Any = None) -> bytes:
        data = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": usage}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    body = chunk({"role": "assistant", "content": ""}) + chunk({"content": TEXT}) + chunk({}, "stop") \
        + chunk(None, usage=USAGE) + b"data: [DONE]\n\n"
    return _response(200, "OK", "text/event-stream", body)


ERROR_500 = _response(500, "Internal Server Error", "application/json", json.dumps(
    {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}
).encode())


class RawUpstream:
    def __init__(self) -> None:
        self.behaviors: dict[str, Any] = {}
        self.close_delay = 1.0  # how long a connection stays open after its 500 (see "close_after_500")
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawUpstream:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def received_texts(self) -> list[str]:
        """The text of the last message of every request received, in arrival order."""
        with self._lock:
            return [body["messages"][-1]["content"] for body in self.received]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                with self._lock:
                    self.received.append(body)
                behavior = self.behaviors.get(body.get("model"))
                if behavior == "close_after_500":
                    writer.write(ERROR_500)
                    await writer.drain()
                    # The close races the client's next request on this connection: the client may
                    # already have sent it when the socket closes, which the fake makes certain by
                    # closing as soon as that request's first bytes arrive (unread, unanswered).
                    try:
                        await asyncio.wait_for(reader.read(1), self.close_delay)
                    except TimeoutError:
                        pass
                    return
                if isinstance(behavior, bytes):
                    writer.write(behavior)
                    await writer.drain()
                    return
                writer.write(_stream(body["model"]) if body.get("stream") else _completion(body["model"]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
