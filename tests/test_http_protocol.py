"""The HTTP protocol `serve` runs (uvicorn's httptools protocol) sends a response's head together with
its body when the body is ready in the same turn of the event loop: one write, one segment, one
wake-up of the client, instead of two. A head whose body comes later still goes out at once."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import JSONResponse, StreamingResponse
from uvicorn.config import Config
from uvicorn.server import ServerState

from llm_gateway.http.protocol import Protocol


class RecordingTransport(asyncio.Transport):
    """The socket's side: what was written, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def app(scope, receive, send):
    if scope["path"] == "/json":
        await JSONResponse({"answer": 42})(scope, receive, send)
    elif scope["path"] == "/stream":
        async def chunks():
            await STREAM_GATE.wait()  # the first chunk comes in a later turn, as an upstream's would
            yield b"data: one\n\n"
            yield b"data: two\n\n"

        await StreamingResponse(chunks(), media_type="text/event-stream")(scope, receive, send)


STREAM_GATE: asyncio.Event


async def serve_one(request: bytes, until) -> RecordingTransport:
    loop = asyncio.get_running_loop()
    config = Config(app=app, http=Protocol, log_level="warning")
    protocol = Protocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await until(transport)
    return transport


async def wait_for(predicate, transport):
    for _ in range(200):
        if predicate(transport):
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened; writes: {transport.writes}")


def test_a_json_answer_goes_out_in_one_write():
    async def main():
        transport = await serve_one(
            b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n",
            lambda t: wait_for(lambda t: t.writes, t))
        for _ in range(5):
            await asyncio.sleep(0)
        return transport

    transport = asyncio.run(main())
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 13" in head
    assert body == b'{"answer":42}'


def test_a_stream_s_head_goes_out_before_its_first_chunk_is_ready():
    async def main():
        global STREAM_GATE
        STREAM_GATE = asyncio.Event()
        transport = await serve_one(
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", lambda t: wait_for(lambda t: t.writes, t))
        head_alone = list(transport.writes)
        STREAM_GATE.set()
        await wait_for(lambda t: t.writes[-1].endswith(b"0\r\n\r\n"), transport)
        return head_alone, transport

    head_alone, transport = asyncio.run(main())
    assert len(head_alone) == 1 and head_alone[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert head_alone[0].endswith(b"\r\n\r\n") and b"transfer-encoding: chunked" in head_alone[0]
    assert b"".join(transport.writes[1:]) == b"b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n"


@pytest.mark.parametrize("then", ["write", "close", "turn"])
def test_a_held_head_keeps_its_place(then):
    from llm_gateway.http.protocol import _HeadWithBody

    async def main():
        transport = RecordingTransport()
        held = _HeadWithBody(transport, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.writes == []
        if then == "write":
            held.write(b"body")
        elif then == "close":
            held.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(main())
    expected = {"write": [b"HTTP/1.1 200 OK\r\n\r\nbody"], "close": [b"HTTP/1.1 200 OK\r\n\r\n"],
                "turn": [b"HTTP/1.1 200 OK\r\n\r\n"]}[then]
    assert transport.writes == expected
    assert transport.closed == (then == "close")


def test_an_aborted_connection_drops_a_held_head():
    from llm_gateway.http.protocol import _HeadWithBody

    async def main():
        transport = RecordingTransport()
        held = _HeadWithBody(transport, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        held.abort()
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(main())
    assert transport.writes == [] and transport.aborted
