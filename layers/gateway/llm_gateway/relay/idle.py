"""A non-streamed answer that keeps its connection busy while a slow upstream thinks.

API Gateway cuts a REST API response stream that stays idle for 5 minutes (regional endpoints), and
a non-streamed call sends nothing until its answer is whole: a slow upstream (a long reasoning
model, a large image) makes the client see a cut, though the upstream answers and the call is
charged. With `GATEWAY_IDLE_PAD_SECONDS` set (template.yaml sets it on the streaming functions;
`serve` leaves it off), a call whose answer is not ready after that many seconds commits its
`200 application/json` head and sends one space every that many seconds, then the JSON body. JSON
allows whitespace before a value, so every JSON parser, and the OpenAI and Anthropic SDKs, read the
padded body as the same answer.

The price: once the head is out its status cannot change, so an error after it (an upstream failure,
a timeout) is the family's error JSON body under that 200. Callers that must tell the two apart
read the body (`error` / `"type": "error"`), as they do for errors inside a stream. Calls that
answer before the pad (nearly all) are untouched: same status, same headers, same bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from .. import logs
from ..errors import GatewayError
from ..http.context import RequestContext
from ..http.family import family_for_path

__all__ = ["padded", "PAD"]

PAD = b" "
# answers still being produced for a client that left while they were padded: kept referenced
# until done, so they still finish and settle
_orphans: set[asyncio.Future] = set()


async def padded(answer: Coroutine[Any, Any, Response], after: float, path: str,
                 ctx: RequestContext) -> Response:
    """`answer`'s response if it is ready within `after` seconds, else a padded 200 that ends with
    its body (or the error it raised, in the family of `path`)."""
    waited_from = time.perf_counter()
    task = asyncio.ensure_future(answer)
    try:
        done, _ = await asyncio.wait({task}, timeout=after)
    except asyncio.CancelledError:
        task.cancel()  # the request itself is cancelled: as it would have been without the pad
        raise
    if done:
        return task.result()
    # the gateway's own time so far is what came before the wait (the rest is the upstream's)
    overhead = f"{(waited_from - ctx.started) * 1000:.3f}"
    return StreamingResponse(_body(task, after, path, ctx), media_type="application/json",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no",
                                      "x-gateway-overhead-ms": overhead})


async def _body(task: asyncio.Future, every: float, path: str, ctx: RequestContext) -> AsyncIterator[bytes]:
    finished = False
    try:
        while not task.done():
            yield PAD
            await asyncio.wait({task}, timeout=every)
        finished = True
    finally:
        if not finished and not task.done():  # the client left: the answer still completes and settles
            _orphans.add(task)
            task.add_done_callback(_orphans.discard)
            task.add_done_callback(_retrieve)
    try:
        response = task.result()
    except GatewayError as err:
        ctx.status_detail = err.kind
        yield orjson.dumps(err.body(family_for_path(path)))
        return
    except Exception:
        logs.log("unhandled error", level=40, exc_info=True, request_id=ctx.request_id)
        ctx.status_detail = "internal"
        internal = GatewayError("internal", f"Internal error; quote request id {ctx.request_id} when reporting it.")
        yield orjson.dumps(internal.body(family_for_path(path)))
        return
    yield bytes(response.body)


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # read, so asyncio does not report it as never retrieved
