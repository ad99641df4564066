"""FastAPI dependencies for the cross-cutting checks: the runtime and the calling key."""

from __future__ import annotations

from fastapi import Request

from ..admission.keys import Caller, key_from_headers
from ..runtime import Runtime


async def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def caller(request: Request) -> Caller:
    """401 unless the request carries a live key; records the key id for the log line."""
    rt: Runtime = request.app.state.runtime
    headers = request.headers
    found = rt.keys.resolve(key_from_headers(headers.get("authorization"), headers.get("x-api-key")))
    info = request.scope["state"]["log"]
    info["key_id"] = found.key.key_id
    info["user_id"] = found.user_id
    return found


async def caller_or_query_key(request: Request) -> Caller:
    """As `caller`, also accepting `?key=sk-...` (the search routes)."""
    headers = request.headers
    presented = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
    if not presented:
        presented = request.query_params.get("key")
    rt: Runtime = request.app.state.runtime
    found = rt.keys.resolve(presented)
    info = request.scope["state"]["log"]
    info["key_id"] = found.key.key_id
    info["user_id"] = found.user_id
    return found
