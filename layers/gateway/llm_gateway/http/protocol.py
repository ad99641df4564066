"""The HTTP/1.1 protocol `serve` runs: uvicorn's httptools protocol, with each response's head sent
together with the first part of its body.

uvicorn writes a response's status line and headers as soon as the app starts the response, and the
body in a second write. On a TCP connection with Nagle off that is two segments, two send calls and,
for the client, two wake-ups, for what is usually one small JSON answer. Here a head is held until
the end of the event loop's turn: a body written in the same turn (every non-streaming answer) goes
out with it in one write; a head whose body comes later (a stream still waiting for its first chunk)
goes out alone at the end of the turn, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadWithBody:
    """A transport that holds a response's head (a write starting with the status line) until the
    next write or the end of the loop's turn. Everything else is the transport's own."""

    __slots__ = ("_transport", "_loop", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data.startswith(b"HTTP/1.1 "):
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Protocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_HeadWithBody(transport, self.loop))  # type: ignore[arg-type]
