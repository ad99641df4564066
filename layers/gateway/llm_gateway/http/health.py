"""`GET /healthz`: the process is up and its store answers."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from ..runtime import Runtime
from .deps import runtime
from .responses import JSON

router = APIRouter()


@router.get("/healthz")
async def healthz(rt: Runtime = Depends(runtime)) -> Response:
    await rt.blocking(rt.catalogs.current)
    return JSON({"status": "ok"})
