"""The models family: `GET /v1/models`, only what the calling key may use."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..admission.keys import Caller, permits
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
    data = [
        _model_entry(name, spec.provider)
        for name, spec in sorted(catalog.models.items())
        if permits(who.key.permissions, name)
    ]
    return JSON({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    # Read from the path directly: a typed path parameter makes FastAPI build a pydantic field for it,
    # which costs this function's cold start an import of pydantic's v1 compatibility layer.
    spec = rt.gate.model_for(who, request.path_params["model_id"])
    return JSON(_model_entry(spec.name, spec.provider))
