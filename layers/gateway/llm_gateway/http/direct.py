"""The busiest routes, dispatched straight to their handler.

A chat call walks about a dozen framework layers before its handler runs and wraps every message
its answer sends in as many (Starlette's error and exception layers, CORS, the router, FastAPI's
request handler and its exit stacks). For a route whose handler takes only the request, parses its
own JSON body and raises GatewayError for every refusal, those layers do nothing the handler needs,
and they cost about a fifth of the gateway's CPU per request (bench/cpu_per_request.py). Such a
handler is marked `@direct`; this layer, inside GatewayMiddleware (request id, log line, body limit,
last-resort 500) and CORS, calls it for a POST to its exact path and turns a GatewayError into the
family's error, as the app's handler does. Everything else takes the full stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import GatewayError
from .family import family_for_path
from .responses import error_response

Handler = TypeVar("Handler", bound=Callable[[Request], Awaitable[Response]])


def direct(handler: Handler) -> Handler:
    """Mark a route handler `(request) -> Response` for direct dispatch (under the route decorator)."""
    handler.__gateway_direct__ = True  # type: ignore[attr-defined]
    return handler


def direct_routes(router: Any) -> dict[str, Any]:
    """The `@direct` routes of a router, by path."""
    return {route.path: route for route in router.routes
            if getattr(getattr(route, "endpoint", None), "__gateway_direct__", False)}


def gateway_error(path: str, exc: GatewayError) -> Response:
    """The answer to a refusal, in the family of the path it came to."""
    return error_response(exc, family_for_path(path))


class DirectRoutes:
    def __init__(self, app: ASGIApp, routes: dict[str, Any]) -> None:
        self.app = app
        self.routes = routes  # path -> the route (direct_routes of every router the app includes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router sets them (the metrics label the route's template)
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        try:
            response = await route.endpoint(Request(scope, receive, send))
        except GatewayError as exc:
            response = gateway_error(scope["path"], exc)
        await response(scope, receive, send)
