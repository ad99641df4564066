"""What the gateway learns about one request as it serves it, in one typed object.

The outer middleware makes it (request id, start time) and writes the request's log line from it;
the key dependency adds who called, the relay what was called, what it cost and how the upstream
went. It lives in the ASGI scope's state, so every layer reaches the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float  # perf_counter at arrival
    upstream_s: float = 0.0  # time spent waiting for the upstream (to its first event on streams)
    key_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    cost: int | None = None  # micros charged
    status_detail: str | None = None  # why a call failed (an error kind or exception name)
    stream_status: str | None = None  # how a stream ended: ok, upstream_error, client_closed
    rate: Any = None  # the admitted call's tightest rate-limit window (x-ratelimit-* headers)
    channel: str | None = None  # the upstream channel that answered, or was tried last (API.md 7)
    attempts: int | None = None  # upstream calls made, over every channel tried

    def log_fields(self) -> dict[str, Any]:
        """The fields of the request's log line that are known (ids and counts, never a secret)."""
        fields: dict[str, Any] = {}
        for name in ("key_id", "user_id", "model", "cost", "status_detail", "stream_status", "channel", "attempts"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return fields


def context(request: Request) -> RequestContext:
    ctx: RequestContext = request.scope["state"]["ctx"]
    return ctx
