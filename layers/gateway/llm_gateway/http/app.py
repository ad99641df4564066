"""The app factory: the same routers serve one machine (all families) or one Lambda family each."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from .. import logs
from ..errors import GatewayError, Kind
from ..metrics import Metrics
from ..runtime import Runtime
from .direct import DirectRoutes, direct_routes, gateway_error
from .family import family_for_path
from .middleware import GatewayMiddleware
from .responses import error_response

# family name -> module holding its `router`. Lambda functions mount one family each.
FAMILIES: dict[str, str] = {
    "chat": "llm_gateway.http.chat",
    "messages": "llm_gateway.http.messages",
    "media": "llm_gateway.http.media",
    "models": "llm_gateway.http.models",
    "management": "llm_gateway.http.management",
    "search": "llm_gateway.http.search",
    # `llm-gateway serve` only: no Lambda function mounts it (one cannot hold a WebSocket)
    "realtime": "llm_gateway.http.realtime",
    "tasks": "llm_gateway.http.tasks",
}

# How often `serve` looks for stale tasks (tasks.service.sweep; they are stale after an hour).
TASK_SWEEP_SECONDS = 60.0

# FastAPI 0.160+ asks the OpenTelemetry API on every request whether a tracer, meter or logger
# provider is configured (three environment lookups each time). The gateway writes its own log line
# per request and traces through X-Ray on AWS; it turns that off where FastAPI has the setting.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {}
)


class _CORS(CORSMiddleware):
    """Starlette's CORS, with its answers unchanged, but a request that names no Origin (every SDK
    and server client) skips the per-request header parsing: its answer only gets `Vary: Origin`
    (measured: Starlette's full path for every request was 3% of a chat call's instructions)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def vary(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                varies = [v.decode("latin-1") for k, v in headers if k.lower() == b"vary"]
                headers = [(k, v) for k, v in headers if k.lower() != b"vary"]
                headers.append((b"vary", ", ".join([*varies, "Origin"]).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, vary)


class _App(FastAPI):
    """FastAPI, with a POST to a `@direct` route sent past the framework's layers (http/direct.py)."""

    direct_paths: frozenset[str] = frozenset()
    direct_stack: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.direct_paths and scope["method"] == "POST":
            scope["app"] = self  # as Starlette sets it: handlers read the runtime from app.state
            await self.direct_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _available(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        try:
            importlib.import_module(FAMILIES[name])
        except ModuleNotFoundError as exc:
            if exc.name != FAMILIES[name]:
                raise
            continue  # a family not built yet
        out.append(name)
    return out


def create_app(families: Iterable[str] | None = None, runtime: Runtime | None = None,
               housekeeping: float = 0, metrics: Metrics | None = None) -> FastAPI:
    """An ASGI app serving `families` (default: every family) over one shared runtime; with
    `housekeeping` seconds, it also drains parked settlements and prunes old usage that often (and,
    serving tasks, fails the stale ones every TASK_SWEEP_SECONDS)."""
    rt = runtime or Runtime.build()
    logs.configure(rt.settings.log_level)
    names = _available(families if families is not None else FAMILIES)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        chores = [asyncio.create_task(rt.housekeeping(housekeeping))] if housekeeping > 0 else []
        if housekeeping > 0 and "tasks" in names:  # tasks whose upstream went silent: failed, released
            from ..tasks.service import sweep_forever

            chores.append(asyncio.create_task(sweep_forever(app, TASK_SWEEP_SECONDS)))
        if metrics is not None and metrics.folder is not None:  # the other workers read this one's
            chores.append(asyncio.create_task(_write_snapshots(metrics)))
        yield
        for chore in chores:
            chore.cancel()
        await rt.providers.aclose()

    app = _App(
        title="llm-gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
        **_NO_TELEMETRY,
    )
    app.state.runtime = rt
    app.state.families = names

    from .health import router as health_router

    app.include_router(health_router)
    hot: dict[str, Any] = {}
    for name in names:
        router = importlib.import_module(FAMILIES[name]).router
        app.include_router(router)
        hot.update(direct_routes(router))

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError):
        return gateway_error(request.url.path, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kinds: dict[int, Kind] = {404: "not_found", 405: "method_not_allowed"}
        kind: Kind = kinds.get(exc.status_code, "invalid_request")
        message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
        err = GatewayError(kind, f"{message} ({request.method} {request.url.path})", status=exc.status_code)
        return error_response(err, family_for_path(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        family = family_for_path(request.url.path)
        said = first.get("msg", "invalid")  # in each family's own words, as shapes.check says them
        message = f"{loc}: {said}" if family == "anthropic" else f"Invalid value for '{loc}': {said}."
        return error_response(GatewayError("invalid_request", message, param=loc), family)

    cors: dict[str, Any] = dict(
        allow_origins=list(rt.settings.cors_origins),
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-request-id", "x-gateway-overhead-ms", "x-gateway-cache", "retry-after",
                        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
        max_age=600,
    )
    app.add_middleware(_CORS, **cors)
    if metrics is not None:
        _add_metrics_route(app, metrics, rt)
    outer: dict[str, Any] = dict(max_body_bytes=rt.settings.max_body_bytes, metrics=metrics, blocking=rt.blocking)
    app.add_middleware(GatewayMiddleware, **outer)
    # the same outer layers, then straight to the handler
    app.direct_stack = GatewayMiddleware(_CORS(DirectRoutes(hot), **cors), **outer)
    app.direct_paths = frozenset(hot)
    return app


METRICS_SNAPSHOT_S = 5.0


async def _write_snapshots(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(METRICS_SNAPSHOT_S)
        try:
            metrics.write_snapshot()
        except OSError:  # a full or read-only disk: the other workers' view is older, nothing else
            logs.log("metrics snapshot failed", level=30, exc_info=True)


def _add_metrics_route(app: FastAPI, metrics: Metrics, rt: Runtime) -> None:
    """`GET /metrics` (Prometheus text); with GATEWAY_METRICS_TOKEN set, only with that bearer token."""
    import hmac

    from starlette.responses import Response

    token = rt.settings.secret("GATEWAY_METRICS_TOKEN")

    async def prometheus(request: Request) -> Response:
        if token:
            sent = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), token.encode()):
                raise GatewayError("invalid_api_key", "Metrics need 'Authorization: Bearer <GATEWAY_METRICS_TOKEN>'.")
        text = metrics.merged().render(rt.settings.currency)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_api_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)

