"""The platform's search family (API.md 5.3): Google Custom Search and Serper, answered unchanged.

Each route reads only the parameters it documents (anything else is not forwarded), checks the key's
permission for its model (`google-search`, `serper-search`, kind "search"), and is admitted, charged
and settled like any model call: one request at the model's `per_request` price, nothing on an
upstream error. The upstream's credentials (and Google's `cx`) are the operator's, never the client's.

Google's route is a GET, so its key may also come as `?key=sk-...`; that parameter is the client's
gateway key and never reaches Google (whose own `key` is the operator's). Serper's route may ask for a
cached answer: `cache` seconds lets an identical query (the same parameters, any user) be answered
from the store while younger than that, charged as a fresh one, with `x-gateway-cache: hit`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from .. import logs
from ..admission.gate import require_kind
from ..admission.keys import Caller, key_from_headers
from ..billing.settle import settle
from ..billing.usage import Usage
from ..catalog import ModelSpec
from ..errors import invalid
from ..relay.calls import serve_call, settle_off_loop
from ..runtime import Runtime
from ..store.base import CACHE_MAX_AGE
from .body import loose_int, parse_body
from .context import context
from .deps import _resolve, runtime

router = APIRouter()

GOOGLE_ROUTE = "/api/v1/openapi/search/google-search/v1"
SERPER_ROUTE = "/api/v1/openapi/search/serper/v1"
GOOGLE_MODEL = "google-search"
SERPER_MODEL = "serper-search"
CACHE_HEADER = "x-gateway-cache"

# Google Custom Search's optional parameters the route forwards (and nothing else).
GOOGLE_TEXT = ("siteSearch", "siteSearchFilter", "lr", "safe", "dateRestrict", "gl", "hl")
SERPER_TEXT = ("gl", "hl")


@dataclass(frozen=True)
class SearchPlan:
    """A search forwarded as built here; its answer passed on unchanged, one request used."""

    operation: str
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        return data, Usage(), ""

    def translator(self) -> Any:  # pragma: no cover - searches never stream
        raise NotImplementedError


async def search_caller(request: Request) -> Caller:
    """The key from the usual headers, else from `?key=` (Google's own way of passing a key)."""
    headers = request.headers
    presented = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
    if presented is None:
        presented = (request.query_params.get("key") or "").strip() or None
    return await _resolve(request, presented)


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise invalid(f"Missing required parameter: '{name}'.", name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid type for '{name}': expected a string.", name)
    if required and not value.strip():
        raise invalid(f"Missing required parameter: '{name}'.", name)
    return value


def _search_model(rt: Runtime, who: Caller, name: str, route: str) -> ModelSpec:
    spec = rt.gate.model_for(who, name)
    require_kind(spec, "search", route)
    return spec


# --- Google Custom Search -------------------------------------------------------------------------

def _picked(source: dict[str, Any], texts: tuple[str, ...], numbers: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """`q` (required) and the named text and bounded integer fields a search forwards, checked; the
    fields absent or empty are left out."""
    params: dict[str, Any] = {"q": _text(source, "q", required=True)}
    for name in texts:
        value = _text(source, name)
        if value is not None:
            params[name] = value
    for name, (low, high) in numbers.items():
        number = loose_int(source, name, minimum=low, maximum=high)
        if number is not None:
            params[name] = number
    return params


def google_params(query: dict[str, Any]) -> dict[str, Any]:
    """The parameters forwarded to Google: `q` and the documented optional ones, checked."""
    return _picked(query, GOOGLE_TEXT, {"num": (1, 10), "start": (1, 100)})


@router.get(GOOGLE_ROUTE)
async def google_search(request: Request, who: Caller = Depends(search_caller),
                        rt: Runtime = Depends(runtime)) -> Response:
    params = google_params(dict(request.query_params))
    spec = _search_model(rt, who, GOOGLE_MODEL, GOOGLE_ROUTE)
    plan = SearchPlan("google-search", params)
    return await serve_call(request, rt, who, spec, plan, route="google-search", stream=False, input_tokens=0,
                            max_output_tokens=None, expected=Usage())


# --- Serper ---------------------------------------------------------------------------------------

def serper_params(body: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The JSON body forwarded to Serper, and the cache age the request allows (None: no cache)."""
    params = _picked(body, SERPER_TEXT, {"page": (1, 1000), "num": (1, 100)})
    cache = loose_int(body, "cache", minimum=1, maximum=int(CACHE_MAX_AGE))
    return params, cache


def cache_key(model: str, params: dict[str, Any]) -> str:
    """One query's address in the cache: its model and its forwarded parameters, whoever asks."""
    canonical = orjson.dumps({"model": model, "params": params}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@router.post(SERPER_ROUTE)
async def serper_search(request: Request, who: Caller = Depends(search_caller),
                        rt: Runtime = Depends(runtime)) -> Response:
    params, max_age = serper_params(await parse_body(request, rt.settings.max_body_bytes))
    spec = _search_model(rt, who, SERPER_MODEL, SERPER_ROUTE)
    key = cache_key(spec.name, params)
    if max_age is not None:
        cached = await rt.blocking(rt.store.get_cached, key)
        if cached is not None and time.time() - cached.stored_at < max_age:
            await _charge_without_call(request, rt, who, spec, "serper-search")
            return Response(cached.answer.encode(), media_type="application/json", headers={CACHE_HEADER: "hit"})
    response = await serve_call(request, rt, who, spec, SearchPlan("serper-search", params), route="serper-search",
                                stream=False, input_tokens=0, max_output_tokens=None, expected=Usage())
    response.headers[CACHE_HEADER] = "miss"
    if max_age is not None and not isinstance(response, StreamingResponse):  # padded (relay/idle.py): not kept
        await _remember(rt, key, bytes(response.body))
    return response


async def _charge_without_call(request: Request, rt: Runtime, who: Caller, spec: ModelSpec, route: str) -> None:
    """A cached answer is admitted (rate limit, funds) and charged exactly as a fresh call would be."""
    ctx = context(request)
    ctx.model = spec.name
    ticket = await rt.blocking.finish(
        rt.gate.admit, who, spec, input_tokens=0, max_output_tokens=None, expected=Usage(),
        request_id=ctx.request_id, route=route, undo=partial(settle, rt.store, usage=None, status="error"),
    )
    record = await settle_off_loop(rt, ticket, Usage(), "ok")
    if record is not None:
        ctx.cost = record.cost


async def _remember(rt: Runtime, key: str, answer: bytes) -> None:
    """Cache a fresh answer; a failure to do so costs the client nothing (it has its answer)."""
    try:
        await rt.blocking(rt.store.put_cached, key, answer.decode(), time.time())
    except Exception:  # noqa: BLE001 - the cache is an optimisation
        logs.log("search cache write failed", level=logging.WARNING, exc_info=True)
