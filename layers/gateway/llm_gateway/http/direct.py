"""The busiest routes, dispatched straight to their handler.

A chat call walked about a dozen framework layers before its handler ran, and every message of its
answer passed through as many (Starlette's error and exception layers, FastAPI's telemetry and body
limit layers, the router, FastAPI's request handler and its exit stacks). For a route whose handler
takes only the request, parses its own JSON body and raises GatewayError for every refusal, those
layers do nothing the handler needs, and they cost about a fifth of the gateway's instructions per
request (callgrind). Such a handler is marked `@direct`; the app (http/app.py) sends a POST to its
exact path through the gateway's own layers only (GatewayMiddleware: request id, log line, body
limit, last-resort 500; then CORS) to DirectRoutes, which calls it. Everything else takes the full
stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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
    """The end of the direct path: the route's handler, called with the request; a GatewayError it
    raises becomes the family's error, as the app's exception handler makes it."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes  # path -> the route (direct_routes of every router the app includes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes[scope["path"]]
        scope["route"] = route  # as the router sets them (the metrics label the route's template)
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        try:
            response = await route.endpoint(Request(scope, receive, send))
        except GatewayError as exc:
            response = gateway_error(scope["path"], exc)
        await response(scope, receive, send)
