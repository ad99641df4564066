"""The Midjourney family (API.md 5.2): `/api/v1/ai/draw/mj/...` task routes, the upstream's callback,
and the public route of stored files (`/api/v1/f/pub/{fileId}`, with wsrv.nl's resize parameters).

Every answer is in the platform envelope. Bodies may be JSON, form-encoded or multipart (an array
such as `base64Array` then comes as its JSON text, or a single data URI). Checks run in the contract's
order: the key, the body (400 naming the field, nothing changed), the permission, the task (another
user's is the same 404 as a missing one), then admission.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from ..admission.keys import Caller
from ..errors import GatewayError, invalid
from ..providers.midjourney import action_of
from ..runtime import Runtime
from ..tasks import lifecycle, service
from ..tasks.files import FILE_ID, IMMUTABLE, Files, S3Files, content_type
from ..tasks.images import Variant, variant_of
from ..tasks.service import Submission
from ..tasks.webhooks import check_url
from .body import loose_int, parse_body
from .deps import caller, runtime
from .responses import platform_ok

router = APIRouter()

MJ = "/api/v1/ai/draw/mj"
DIMENSIONS = ("PORTRAIT", "SQUARE", "LANDSCAPE")
PAGE_SIZES = (5, 20)
_DATA_URI = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,(.*)", re.DOTALL)
# a redirect to a presigned link is cached well within the link's life (S3Files.LINK_SECONDS)
LINK_CACHE = "public, max-age=300"


# --- reading the fields --------------------------------------------------------------------------

def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise invalid(f"Missing required parameter: '{name}'.", name)
        return ""
    if not isinstance(value, str):
        raise invalid(f"Invalid type for '{name}': expected a string.", name)
    if required and not value.strip():
        raise invalid(f"Missing required parameter: '{name}'.", name)
    return value.strip()


def _data_uri(value: Any, name: str) -> str:
    match = _DATA_URI.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise invalid(f"Invalid value for '{name}': expected a base64 data URI (data:image/png;base64,...).", name)
    try:
        base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Invalid value for '{name}': its base64 data does not decode.", name) from None
    return value.strip()


def _data_uris(body: dict[str, Any], name: str, low: int, high: int) -> list[str]:
    value = body.get(name)
    if value is None or value == "" or value == []:
        items: list[Any] = []
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise invalid(f"Invalid value for '{name}': expected an array of data URIs.", name) from None
        if not isinstance(items, list):
            raise invalid(f"Invalid value for '{name}': expected an array of data URIs.", name)
    elif isinstance(value, str):
        items = [value]
    else:
        raise invalid(f"Invalid type for '{name}': expected an array of data URIs.", name)
    if not low <= len(items) <= high:
        raise invalid(f"Invalid value for '{name}': between {low} and {high} images are needed, not {len(items)}.",
                      name)
    return [_data_uri(item, name) for item in items]


def _common(request: Request, rt: Runtime, body: dict[str, Any]) -> tuple[str, str]:
    """The pool (`type`) and the webhook every submission may send; `model`, if sent, is `midjourney`."""
    model = _text(body, "model") or service.MODEL
    if model != service.MODEL:
        raise invalid(f"Invalid value for 'model': the Midjourney routes serve '{service.MODEL}'.", "model")
    pool = (_text(body, "type") or "FAST").upper()
    if pool not in lifecycle.POOLS:
        raise invalid("Invalid value for 'type': FAST or NORMAL.", "type")
    webhook = _text(body, "webhook")
    if webhook:
        check_url(webhook, service.state(request).webhooks.allow_private)
    return pool, webhook


def _task_id(source: dict[str, Any]) -> int:
    task_id = loose_int(source, "taskId", minimum=1)
    if task_id is None:
        raise invalid("Missing required parameter: 'taskId'.", "taskId")
    if task_id > MAX_TASK_ID:  # no store holds it: the same 404 as any unknown task
        raise service.not_found(task_id)
    return task_id


MAX_TASK_ID = 2**63 - 1  # the largest integer SQLite stores (ids come from a sequence far below it)


async def _fields(request: Request, rt: Runtime) -> dict[str, Any]:
    """The query string's parameters and the body's fields (the body wins)."""
    body = await parse_body(request, rt.settings.max_body_bytes)
    return {**dict(request.query_params), **body}


# --- submissions ---------------------------------------------------------------------------------

@router.post(f"{MJ}/imagine")
async def imagine(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes)
    prompt = _text(body, "prompt", required=True)
    images = _data_uris(body, "base64Array", 0, 5)
    pool, webhook = _common(request, rt, body)
    upstream: dict[str, Any] = {"prompt": prompt}
    if images:
        upstream["base64Array"] = images
    task_id = await service.submit(request, rt, who, Submission(
        "imagine", "IMAGINE", pool, upstream, prompt=prompt, description=f"/imagine {prompt}", webhook=webhook))
    return platform_ok(task_id)


@router.post(f"{MJ}/blend")
async def blend(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes)
    images = _data_uris(body, "base64Array", 2, 5)
    dimensions = (_text(body, "dimensions") or "SQUARE").upper()
    if dimensions not in DIMENSIONS:
        raise invalid(f"Invalid value for 'dimensions': one of {', '.join(DIMENSIONS)}.", "dimensions")
    pool, webhook = _common(request, rt, body)
    task_id = await service.submit(request, rt, who, Submission(
        "blend", "BLEND", pool, {"base64Array": images, "dimensions": dimensions},
        description=f"/blend {len(images)} images {dimensions}", webhook=webhook))
    return platform_ok(task_id)


@router.post(f"{MJ}/describe")
async def describe(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes)
    image = _data_uri(_text(body, "base64", required=True), "base64")
    pool, webhook = _common(request, rt, body)
    task_id = await service.submit(request, rt, who, Submission(
        "describe", "DESCRIBE", pool, {"base64": image}, description="/describe", webhook=webhook))
    return platform_ok(task_id)


@router.post(f"{MJ}/action")
async def action(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes)
    parent_id = _task_id(body)
    custom_id = _text(body, "customId", required=True)
    mask = body.get("base64Mask")
    mask = _data_uri(mask, "base64Mask") if mask not in (None, "") else ""
    pool, webhook = _common(request, rt, body)
    rt.gate.model_for(who, service.MODEL)  # 403 before the task's 404
    parent = await rt.blocking(rt.store.get_task, who.user_id, parent_id)
    if parent is None:
        raise service.not_found(parent_id)
    button = next((b for b in parent.actions if b.get("customId") == custom_id), None)
    task_action = action_of(custom_id) if button is not None else None
    if button is None or task_action is None:
        raise invalid(f"Invalid value for 'customId': not one of task {parent_id}'s actions.", "customId")
    upstream: dict[str, Any] = {"taskId": parent.upstream_id, "customId": custom_id}
    if mask:
        upstream["maskBase64"] = mask
    label = button.get("label") or button.get("emoji") or task_action.lower()
    task_id = await service.submit(request, rt, who, Submission(
        "action", task_action, pool, upstream, prompt=parent.prompt,
        description=f"/{task_action.lower()} {parent_id} {label}", webhook=webhook, parent=parent))
    return platform_ok(task_id)


# --- queries -------------------------------------------------------------------------------------

@router.get(f"{MJ}/query")
@router.post(f"{MJ}/query")
async def query(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    task_id = _task_id(await _fields(request, rt))
    rt.gate.model_for(who, service.MODEL)
    task = await rt.blocking(rt.store.get_task, who.user_id, task_id)
    if task is None:
        raise service.not_found(task_id)
    task = await service.refresh(request, rt, task)
    return platform_ok(lifecycle.public(task, service.base_url(request)))


@router.get(f"{MJ}/query-mj-tasks")
@router.post(f"{MJ}/query-mj-tasks")
async def query_tasks(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    fields = await _fields(request, rt)
    page = loose_int(fields, "page", minimum=1) or 1
    size = loose_int(fields, "pageSize", minimum=PAGE_SIZES[0], maximum=PAGE_SIZES[1]) or 10
    rt.gate.model_for(who, service.MODEL)
    total, tasks = await rt.blocking(rt.store.list_tasks, who.user_id, offset=(page - 1) * size, limit=size)
    tasks = [await service.refresh(request, rt, task) for task in tasks]
    base = service.base_url(request)
    return platform_ok({"total": total, "tasks": [lifecycle.public(t, base) for t in tasks]})


# --- the upstream's callback ---------------------------------------------------------------------

@router.post(service.CALLBACK_ROUTE + "{secret}")
async def upstream_callback(secret: str, request: Request, rt: Runtime = Depends(runtime)) -> Response:
    service.check_callback(request, secret)  # before the body is read: a forged call changes nothing
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    await service.callback(request, rt, body)
    return platform_ok(None)


# --- stored files ----------------------------------------------------------------------------------

@router.get(lifecycle.FILES_ROUTE + "{file_id}")
async def public_file(file_id: str, request: Request, rt: Runtime = Depends(runtime)) -> Response:
    """No key needed, as OhMyGPT's public files: the id is unguessable. From S3 (AWS), a 302 to a
    presigned link of the object (tasks.files says why); from a folder, the bytes."""
    if not FILE_ID.fullmatch(file_id):
        raise GatewayError("not_found", "File not found.")
    variant = variant_of(dict(request.query_params))
    files = service.state(request).files
    name = file_id if variant is None else f"{file_id}.v/{variant.name}"
    if isinstance(files, S3Files):
        if not await rt.blocking(files.exists, name) and (
                variant is None or await _make_variant(rt, files, file_id, name, variant) is None):
            raise GatewayError("not_found", "File not found.")
        return RedirectResponse(files.link(name), status_code=302, headers={"cache-control": LINK_CACHE})
    data = await rt.blocking(files.get, name)
    if data is None and variant is not None:
        data = await _make_variant(rt, files, file_id, name, variant)
    if data is None:
        raise GatewayError("not_found", "File not found.")
    return Response(data, media_type=content_type(data), headers={"cache-control": IMMUTABLE})


async def _make_variant(rt: Runtime, files: Files, file_id: str, name: str, variant: Variant) -> bytes | None:
    """Render and keep a variant of the stored file `file_id` (None: there is no such file)."""
    original = await rt.blocking(files.get, file_id)
    if original is None:
        return None
    from ..tasks.images import render  # Pillow: imported on the first variant a process makes

    data = await asyncio.to_thread(render, original, variant)
    await rt.blocking(files.put, name, data)
    return data
