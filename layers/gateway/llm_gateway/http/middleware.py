"""The outermost layer of every app: request id, body-size gate, timing, the request log line, and
the last-resort 500.

Pure ASGI (no BaseHTTPMiddleware) so streaming responses pass through untouched, chunk by chunk.
One layer does all of it: every layer wraps every message a response sends.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import logs
from ..errors import GatewayError
from ..metrics import Metrics
from ..store.base import StoreBusy
from .context import RequestContext
from .family import family_for_path
from .responses import error_response

if TYPE_CHECKING:
    from ..runtime import Blocking


def new_request_id() -> str:
    """`req_` and 32 hex digits: the time in milliseconds (12 digits), then 80 random bits. Ids made
    later sort after earlier ones, so a store keyed by them (SQLite's usage records) adds each
    record at the end of its key index: the records a commit carries share one page there, and no
    insert reads a random old page back, however long the usage history grows. 80 random bits per
    millisecond keep ids unique."""
    return f"req_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics | None = None,
                 blocking: Blocking | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics  # `serve` only (GET /metrics); None on Lambda
        self.blocking = blocking  # told how many requests are in flight (its group commits)
        # On Lambda each request's log line also names its invocation and its X-Ray trace
        self.on_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = new_request_id()
        ctx = RequestContext(request_id, start)
        scope.setdefault("state", {})["ctx"] = ctx
        status_box = [0]
        rid = request_id.encode()
        path = scope.get("path", "")
        model_call = is_model_call(path)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", rid))
                if model_call and b"x-gateway-overhead-ms" not in names:
                    # set as the headers leave: time in the gateway so far, less the upstream's
                    # wait that serve_call recorded (for a stream, until its first event)
                    overhead = (time.perf_counter() - start - ctx.upstream_s) * 1000
                    headers.append((b"x-gateway-overhead-ms", f"{max(overhead, 0.0):.3f}".encode()))
                    if ctx.rate is not None:
                        headers += rate_headers(ctx.rate)
                message = {**message, "headers": headers}
            await send(message)

        blocking = self.blocking
        if blocking is not None:
            blocking.in_flight += 1
        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body_bytes:
                err = GatewayError(
                    "request_too_large",
                    f"Request body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes.",
                )
                await error_response(err, family_for_path(path), request_id)(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except StoreBusy as exc:
            # The store stayed throttled or locked through its retries before anything was charged
            # or sent upstream (a settlement that fails is parked, never raised): come back shortly.
            ctx.status_detail = "store_busy"
            logs.log("store busy", level=30, request_id=request_id, detail=str(exc))
            if not status_box[0]:
                err = GatewayError("unavailable", "The gateway is busy; retry after the time in Retry-After.",
                                   headers={"Retry-After": str(exc.retry_after)})
                await error_response(err, family_for_path(path), request_id)(scope, receive, send_with_id)
        except Exception:
            # An unexpected fault: a generic 500 in the caller's family, never a stack trace; the
            # log line and the 500 share the request id.
            logs.log("unhandled error", level=40, exc_info=True, request_id=request_id)
            if not status_box[0]:
                err = GatewayError("internal", f"Internal error; quote request id {request_id} when reporting it.")
                await error_response(err, family_for_path(path), request_id)(scope, receive, send_with_id)
        finally:
            if blocking is not None:
                blocking.in_flight -= 1
            logs.log(
                "request",
                request_id=request_id,
                method=scope.get("method"),
                path=path,
                status=status_box[0] or 499,
                ms=logs.now_ms(start),
                **ctx.log_fields(),
                **(lambda_fields(scope) if self.on_lambda else {}),
            )
            if self.metrics is not None:
                route = scope.get("route")  # the matched route's template keeps the labels few
                self.metrics.observe(scope.get("method") or "", getattr(route, "path", "unmatched"),
                                     status_box[0] or 499, time.perf_counter() - start, ctx, model_call)


def rate_headers(rate: Any) -> list[tuple[bytes, bytes]]:
    """OpenAI's request-rate headers for the admitted call's tightest window: its limit, the hits
    left (where the store knows them) and the time until it closes, as a Go duration ("1m0s")."""
    out = [(b"x-ratelimit-limit-requests", str(rate.limit).encode())]
    if rate.remaining is not None:
        out.append((b"x-ratelimit-remaining-requests", str(max(rate.remaining, 0)).encode()))
    out.append((b"x-ratelimit-reset-requests", _duration(max(rate.reset_at - time.time(), 0.0)).encode()))
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


def lambda_fields(scope: Scope) -> dict[str, Any]:
    """The Lambda request id and X-Ray trace id of this request, as AWS Lambda Powertools logs them:
    from Mangum's `aws.context` (buffered functions) or the Web Adapter's `x-amzn-lambda-context`
    header (streaming ones); the trace from the `x-amzn-trace-id` header, else `_X_AMZN_TRACE_ID`."""
    request_id = getattr(scope.get("aws.context"), "aws_request_id", None)
    trace = None
    for name, value in scope.get("headers", ()):
        if name == b"x-amzn-trace-id":
            trace = value.decode("latin-1")
        elif name == b"x-amzn-lambda-context" and request_id is None:
            try:
                request_id = json.loads(value).get("request_id")
            except (ValueError, AttributeError):
                pass
    trace = trace or os.environ.get("_X_AMZN_TRACE_ID")
    out: dict[str, Any] = {}
    if request_id:
        out["lambda_request_id"] = str(request_id)
    if trace:
        root = next((p for p in trace.split(";") if p.startswith("Root=")), trace)
        out["xray_trace_id"] = root.removeprefix("Root=")
    return out


def is_model_call(path: str) -> bool:
    """The routes that call a model (every /v1/ route but the model list)."""
    return path.startswith("/v1/") and not path.startswith("/v1/models")


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
