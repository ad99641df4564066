"""The models family: `GET /v1/models`, only what the calling key may use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..admission.keys import Caller, permits
from ..catalog import Catalog
from ..errors import GatewayError
from ..runtime import Runtime
from .deps import caller, runtime
from .responses import JSON

router = APIRouter()

_OWNERS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "mock": "llm-gateway"}
_CREATED = 1_700_000_000


def _model_entry(name: str, provider: str) -> dict:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": _OWNERS.get(provider, provider)}


@router.get("/v1/models")
async def list_models(who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    catalog = rt.catalogs.current()
    usable = _usable(rt, catalog)
    data = [
        _model_entry(name, spec.provider)
        for name, spec in sorted(catalog.models.items())
        if name in usable and permits(who.key.permissions, name)
    ]
    return JSON({"object": "list", "data": data})


_USABLE: dict[str, Any] = {"catalog": None, "names": frozenset()}


def _usable(rt: Runtime, catalog: Catalog) -> frozenset[str]:
    """The models that could be answered now: one of their channels (or, with none, their provider)
    has its credentials configured. A model whose provider has none would only answer 502, so it is
    not offered. Worked out once per catalog (a new one comes with every change)."""
    if _USABLE["catalog"] is not catalog:
        names = set()
        for name, spec in catalog.models.items():
            route = rt.router.route(catalog, spec)
            if any(_configured(hop.provider) for group in route.groups for hop in group):
                names.add(name)
        _USABLE.update(catalog=catalog, names=frozenset(names))
    return _USABLE["names"]


def _configured(provider: Any) -> bool:
    try:
        provider.require_configured()
    except GatewayError:
        return False
    return True


@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    # Read from the path directly: a typed path parameter makes FastAPI build a pydantic field for it,
    # which costs this function's cold start an import of pydantic's v1 compatibility layer.
    spec = rt.gate.model_for(who, request.path_params["model_id"])
    return JSON(_model_entry(spec.name, spec.provider))
