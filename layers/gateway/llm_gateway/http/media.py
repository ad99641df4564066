"""The media family (OpenAI's shapes): `/v1/embeddings`, `/v1/images/generations`, `/v1/audio/speech`.

Each route checks its body, that the model is of the route's kind, and what the call will use —
input tokens, images by size and quality, characters to speak — so admission reserves it; the
upstream's reported usage (tokens, for embeddings and the gpt-image models) is billed when it comes.
Speech is relayed as the audio arrives.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from .. import tokens
from ..admission.gate import require_kind
from ..admission.keys import Caller
from ..billing.cost import Unpriced, image_price
from ..billing.usage import Usage, from_openai, image_key
from ..catalog import ModelSpec
from ..errors import invalid
from ..relay.calls import serve_bytes, serve_call
from ..relay.passthrough import AudioPlan, JSONPlan, renamed
from ..runtime import Runtime
from .body import FormFields, loose_float, loose_int, parse_body
from .deps import authorized, caller, runtime
from .direct import direct
from .shapes import EmbeddingsRequest, ImagesRequest, SpeechRequest, check
from .tts import router as tts_router

router = APIRouter()


def _typed(body: dict[str, Any], **readers: Any) -> dict[str, Any]:
    """A form body's text values, of the fields named, read as the numbers JSON would carry."""
    if not isinstance(body, FormFields):
        return body
    out = dict(body)
    for name, read in readers.items():
        if name in out:
            out[name] = read(out, name)
    return out


# --- embeddings -----------------------------------------------------------------------------------

def _embedding_tokens(spec: ModelSpec, value: Any) -> int:
    items = value if isinstance(value, list) and not all(isinstance(v, int) for v in value) else [value]
    return sum(len(i) if isinstance(i, list) else tokens.count_text(str(i), spec.encoding) for i in items)


@router.post("/v1/embeddings")
@direct
async def embeddings(request: Request) -> Response:
    rt, who = await authorized(request)
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    check(EmbeddingsRequest, body)
    spec = rt.gate.model_for(who, body["model"])
    require_kind(spec, "embedding", "/v1/embeddings")
    counted = _embedding_tokens(spec, body["input"])
    plan = JSONPlan("embeddings", {**body, "model": spec.upstream_model}, lambda data: from_openai(data.get("usage")),
                    rename=renamed(spec))
    return await serve_call(request, rt, who, spec, plan, route="embeddings", stream=False, input_tokens=counted,
                            max_output_tokens=None, expected=Usage(input_tokens=counted))


# --- images ---------------------------------------------------------------------------------------

# What a request that names no size or quality gets, as OpenAI answers it.
DEFAULT_SIZE = "1024x1024"
DEFAULT_QUALITY = {"dall-e-3": "standard", "dall-e-2": "standard"}


def _image_usage(data: dict[str, Any], key: str) -> Usage:
    """Tokens when the upstream reports them (the gpt-image models), else the images it produced."""
    reported = data.get("usage")
    if isinstance(reported, dict) and (reported.get("input_tokens") or reported.get("output_tokens")):
        usage = from_openai(reported)
        if usage is not None:
            return usage
    produced = data.get("data")
    return Usage(images={key: len(produced) if isinstance(produced, list) else 0})


@router.post("/v1/images/generations")
async def images(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = _typed(await parse_body(request, rt.settings.max_body_bytes), n=loose_int)
    check(ImagesRequest, body)
    spec = rt.gate.model_for(who, body["model"])
    require_kind(spec, "image", "/v1/images/generations")
    size = body.get("size") or DEFAULT_SIZE
    quality = body.get("quality") or DEFAULT_QUALITY.get(spec.upstream_model, "auto")
    key = image_key(size, quality)
    try:
        image_price(spec.prices, key)
    except Unpriced:
        if not spec.prices.free:
            raise invalid(f"The model '{spec.name}' has no price for size '{size}' and quality '{quality}'.",
                          "size") from None
    n = body.get("n") or 1
    plan = JSONPlan("images", {**body, "model": spec.upstream_model}, lambda data: _image_usage(data, key))
    return await serve_call(request, rt, who, spec, plan, route="images", stream=False, input_tokens=0,
                            max_output_tokens=None, expected=Usage(images={key: n}))


# --- speech ---------------------------------------------------------------------------------------

@router.post("/v1/audio/speech")
async def speech(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    body = _typed(await parse_body(request, rt.settings.max_body_bytes), speed=loose_float)
    check(SpeechRequest, body)
    spec = rt.gate.model_for(who, body["model"])
    require_kind(spec, "speech", "/v1/audio/speech")
    plan = AudioPlan("speech", {**body, "model": spec.upstream_model}, Usage(characters=len(body["input"])))
    return await serve_bytes(request, rt, who, spec, plan, route="speech")


# Azure text to speech streams audio as speech does, so the same family (one function on AWS) serves
# it: its routes join this router as they are.
router.routes.extend(tts_router.routes)
