"""The web console (API.md 8): a static page, its script and its stylesheet, shipped in the package.

The page works only through the public platform routes, with the key the user pastes (kept in the
tab's sessionStorage, sent as `Authorization: Bearer`), so it can do nothing that key cannot. It is
served by the management family (on AWS, the management function) with a Content-Security-Policy
that allows its own origin only: no inline script or style, nothing from another origin, no framing.
Nothing here sets a cookie. Asset URLs in the page are relative, so it works under an API Gateway
stage prefix (`/prod/console`) as well as at the root.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

from ..errors import GatewayError

# file name -> media type; nothing else under static/console is served
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",  # forms are handled by the script; none is ever sent, so a key never lands in a URL
    "frame-ancestors 'none'",
))
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",  # revalidate: a new release's page and script arrive together
}


def add_routes(router: APIRouter) -> None:
    """The console's two routes, on the router of the family that serves it."""
    router.add_api_route("/console", console_page, methods=["GET"])
    router.add_api_route("/console/{asset}", console_asset, methods=["GET"])


async def console_page() -> Response:
    return _serve("index.html")


async def console_asset(asset: str) -> Response:
    if asset not in ASSETS or asset == "index.html":
        raise GatewayError("not_found", f"The console has no file '{asset}'.")
    return _serve(asset)


def _serve(name: str) -> Response:
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)


@cache
def _read(name: str) -> bytes:
    """Read once per process: the files never change under a running gateway."""
    return (files("llm_gateway.http") / "static" / "console" / name).read_bytes()
