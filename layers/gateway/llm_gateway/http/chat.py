"""The chat family: `POST /v1/chat/completions`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from .. import tokens
from ..admission.keys import Caller
from ..catalog import ModelSpec
from ..errors import GatewayError, invalid
from ..runtime import Runtime
from .body import field, parse_body, positive_int
from .calls import Plan, serve_call
from .deps import caller, runtime
from .passthrough import OpenAIPassthrough

router = APIRouter()


def validate_chat(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], bool]:
    model = field(body, "model", str, required=True)
    if not model.strip():
        raise invalid("Invalid value for 'model': must not be empty.", "model")
    messages = field(body, "messages", list, required=True)
    if not messages:
        raise invalid("Invalid value for 'messages': must contain at least one message.", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise invalid(f"Missing required parameter: '{where}.role'.", f"{where}.role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid(f"Invalid type for '{where}.content': expected a string or an array.", f"{where}.content")
    stream = field(body, "stream", bool, default=False)
    positive_int(body, "max_tokens")
    positive_int(body, "max_completion_tokens")
    field(body, "stream_options", dict)
    field(body, "tools", list)
    field(body, "temperature", float)
    field(body, "top_p", float)
    positive_int(body, "n")
    field(body, "stop", (str, list))
    field(body, "response_format", dict)
    return model, messages, stream


def chat_plan(spec: ModelSpec, body: dict[str, Any], stream: bool) -> Plan:
    """The plan that serves an OpenAI chat request with `spec`'s upstream."""
    if spec.family == "anthropic" or spec.serialize_messages:
        raise GatewayError("upstream_error", f"Claude models are not yet supported on this route ({spec.name}).")
    return OpenAIPassthrough(body, spec.upstream_model, stream)


def chat_input_tokens(spec: ModelSpec, body: dict[str, Any]) -> int:
    return tokens.count_messages(body["messages"], spec.encoding, tools=body.get("tools"))


@router.post("/v1/chat/completions")
async def chat_completions(
    request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)
) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    model, _, stream = validate_chat(body)
    spec = rt.gate.model_for(who, model)
    if spec.endpoint == "completions":
        raise invalid(
            f"'{model}' is not a chat model: call it through /v1/completions.", "model"
        )
    plan = chat_plan(spec, body, stream)
    return await serve_call(
        request, rt, who, spec, plan,
        route="chat",
        stream=stream,
        input_tokens=chat_input_tokens(spec, body),
        max_output_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
    )
