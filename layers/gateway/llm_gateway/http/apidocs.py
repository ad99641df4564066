"""`GET /openapi.json` and `GET /docs`: FastAPI's own schema and Swagger UI, for every family.

The routes parse their bodies themselves (`body.parse_body`, then `shapes.check`), so FastAPI sees
no body parameter on them and would describe none. The schema is therefore FastAPI's `get_openapi`
over every family's routes, completed from the table in `openapi` with the request models the
routes really check (`shapes`), the answers they give, and each family's error body. It is built on
the first request for it and kept (that module is not even imported before); nothing here runs on a
model call.

Swagger UI's script and stylesheet are vendored in the package (`static/swagger-ui`, the npm
package swagger-ui-dist at the version in its VERSION file; `scripts/refresh-swagger-ui.sh`
replaces them), so the page loads nothing from another origin. Served by the management family,
which on AWS is the management function; the schema still lists every family's routes.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import GatewayError

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self' 'unsafe-inline'",  # FastAPI's page starts Swagger UI from an inline script
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
))


def add_routes(router: APIRouter) -> None:
    """The schema, the page and its files, on the router of the family that serves them."""
    router.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    router.add_api_route("/docs", docs_page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/docs/{asset}", docs_asset, methods=["GET"], include_in_schema=False)


async def openapi_json() -> Response:
    return Response(_schema_bytes(), media_type="application/json")


async def docs_page(request: Request) -> Response:
    from fastapi.openapi.docs import get_swagger_ui_html

    # relative URLs: the page works under an API Gateway stage prefix (/prod/docs) as at the root
    page = get_swagger_ui_html(
        openapi_url="openapi.json", title="llm-gateway API",
        swagger_js_url="docs/swagger-ui-bundle.js", swagger_css_url="docs/swagger-ui.css",
        swagger_favicon_url="docs/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # else the page asks validator.swagger.io
    )
    return Response(page.body, media_type="text/html; charset=utf-8",
                    headers={"content-security-policy": CONTENT_SECURITY_POLICY, "x-content-type-options": "nosniff"})


async def docs_asset(asset: str) -> Response:
    if asset not in ASSETS:
        raise GatewayError("not_found", f"The API documentation has no file '{asset}'.")
    return Response(_read(asset), media_type=ASSETS[asset],
                    headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"})


@cache
def _read(name: str) -> bytes:
    return (files("llm_gateway.http") / "static" / "swagger-ui" / name).read_bytes()


@cache
def _schema_bytes() -> bytes:
    import orjson

    from .openapi import openapi_schema  # the answers' models and the table: built when first asked

    return orjson.dumps(openapi_schema())


