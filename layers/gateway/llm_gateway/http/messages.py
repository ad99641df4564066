"""The messages family (Anthropic's shapes): `/v1/messages`, `/v1/messages/count_tokens`, `/v1/complete`.

Any catalog model answers here: a Claude model is forwarded to Anthropic (with the client's
`anthropic-version` and `anthropic-beta`), an OpenAI-wire model is translated to chat and back
(`relay.plans`). `/v1/complete` is served as a Messages request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from .. import tokens
from ..admission.gate import output_allowance, require_kind
from ..admission.keys import Caller
from ..catalog import ModelSpec
from ..relay.calls import serve_call
from ..relay.plans import plan_for
from ..relay.translated import default_max_tokens
from ..runtime import Runtime
from ..translate.legacy import complete_to_messages, serialized_messages
from .body import parse_body
from .deps import authorized, caller, runtime
from .direct import direct
from .responses import JSON
from .shapes import CompleteRequest, CountTokensRequest, MessagesRequest, check

router = APIRouter()

# The client headers an Anthropic upstream receives as sent (API.md 3.2).
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
# Messages fields the count_tokens endpoint does not take.
_NOT_COUNTED = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata", "service_tier")


def anthropic_headers(request: Request) -> dict[str, str] | None:
    found = {name: request.headers[name] for name in PASSED_HEADERS if request.headers.get(name)}
    return found or None


def validate_messages(body: dict[str, Any], *, counting: bool = False) -> tuple[str, bool]:
    """The Messages API's own checks, with its field paths in the messages (`messages.0.role`)."""
    check(CountTokensRequest if counting else MessagesRequest, body, anthropic=True)
    return body["model"], bool(body.get("stream")) and not counting


def _input_tokens(spec: ModelSpec, body: dict[str, Any]) -> int:
    return tokens.count_messages(body["messages"], spec.encoding, system=body.get("system"), tools=body.get("tools"))


def _for_model(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The request as `spec` takes it: a serialized model gets its turns joined into one."""
    if spec.serialize_messages:
        return serialized_messages(body, max_tokens=default_max_tokens(spec))
    return body


async def _serve_messages(
    request: Request, rt: Runtime, who: Caller, spec: ModelSpec, body: dict[str, Any], *,
    stream: bool, route: str, legacy: bool = False,
) -> Response:
    body = _for_model(spec, body)
    input_tokens = _input_tokens(spec, body)
    plan = plan_for("complete" if legacy else "messages", spec, body, stream,
                    headers=anthropic_headers(request), input_tokens=input_tokens)
    return await serve_call(
        request, rt, who, spec, plan,
        route=route, stream=stream, input_tokens=input_tokens,
        max_output_tokens=output_allowance(spec, body, ("max_tokens",)),
    )


@router.post("/v1/messages")
@direct
async def messages(request: Request) -> Response:
    rt, who = await authorized(request)
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    model, stream = validate_messages(body)
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "chat", request.scope["path"])
    return await _serve_messages(request, rt, who, spec, body, stream=stream, route="messages")


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """Free, but a call all the same: it counts against the rate limits."""
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    model, _ = validate_messages(body, counting=True)
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "chat", request.scope["path"])
    body = _for_model(spec, body)
    if spec.wire != "anthropic":
        await rt.blocking(rt.gate.hit_model, who, spec)
        return JSON({"input_tokens": _input_tokens(spec, body)})
    provider = rt.providers.get(spec.provider)
    provider.require_configured()
    await rt.blocking(rt.gate.hit_model, who, spec)
    upstream = {k: v for k, v in body.items() if k not in _NOT_COUNTED}
    upstream["model"] = spec.upstream_model
    data = await provider.send(
        "count_tokens", upstream, model=spec.upstream_model, headers=anthropic_headers(request)
    )
    counted = data.get("input_tokens")
    return JSON({"input_tokens": counted if isinstance(counted, int) else _input_tokens(spec, body)})


@router.post("/v1/complete")
async def complete(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """Anthropic text completions, served through the Messages API."""
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    check(CompleteRequest, body, anthropic=True)
    model, stream = body["model"], bool(body.get("stream"))
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "chat", request.scope["path"])
    output_allowance(spec, body, ("max_tokens_to_sample",))
    messages_body = complete_to_messages(body, model=model)
    return await _serve_messages(request, rt, who, spec, messages_body, stream=stream, route="complete", legacy=True)
