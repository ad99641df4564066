"""The chat family: `/v1/chat/completions`, `/v1/completions` and `/v1/claude/web/completion`.

Every route here answers in OpenAI's shapes, whatever serves the model: an OpenAI-wire upstream is
forwarded to, another wire is translated (`relay.plans`), and a serialized model (`claude-2-web`)
first has its messages joined into one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from .. import tokens
from ..admission.gate import output_allowance, require_kind
from ..admission.keys import Caller
from ..catalog import ModelSpec
from ..errors import invalid
from ..relay.calls import serve_call
from ..relay.plans import plan_for
from ..runtime import Runtime
from ..translate.legacy import serialized_chat
from .body import FormFields, field, loose_bool, loose_float, loose_int, parse_body
from .deps import authorized, caller, runtime
from .direct import direct
from .shapes import ChatRequest, CompletionsRequest, check

router = APIRouter()


def validate_chat(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], bool]:
    check(ChatRequest, body)
    return body["model"], body["messages"], bool(body.get("stream"))


def chat_input_tokens(spec: ModelSpec, body: dict[str, Any]) -> int:
    return tokens.count_messages(body["messages"], spec.encoding, tools=body.get("tools"))


@router.post("/v1/chat/completions")
@direct
async def chat_completions(request: Request) -> Response:
    rt, who = await authorized(request)
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    return await serve_chat(request, rt, who, body, route="chat")


async def serve_chat(request: Request, rt: Runtime, who: Caller, body: dict[str, Any], *, route: str) -> Response:
    """A chat request, validated, planned for its model and served."""
    model, _, stream = validate_chat(body)
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "chat", request.scope["path"])
    if spec.endpoint == "completions":
        raise invalid(
            f"'{model}' is not a chat model: call it through /v1/completions.", "model"
        )
    if spec.serialize_messages:
        body = serialized_chat(body)
    plan = plan_for("chat", spec, body, stream)
    return await serve_call(
        request, rt, who, spec, plan,
        route=route,
        stream=stream,
        input_tokens=chat_input_tokens(spec, body),
        max_output_tokens=output_allowance(
            spec, body, ("max_completion_tokens", "max_tokens"), choices=body.get("n") or 1,
            default=plan.body.get("max_tokens"),
        ),
    )


# Fields of a form-encoded legacy request that arrive as text and travel upstream as JSON values.
_FORM_INTS = ("max_tokens", "n", "logprobs", "best_of", "seed")
_FORM_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_FORM_BOOLS = ("stream", "echo")


def _typed(body: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    for names, read in ((_FORM_INTS, loose_int), (_FORM_NUMBERS, loose_float), (_FORM_BOOLS, loose_bool)):
        for name in names:
            if name in out:
                value = read(out, name)
                if value is None:
                    del out[name]
                else:
                    out[name] = value
    return out


def validate_completions(body: dict[str, Any]) -> tuple[str, bool]:
    check(CompletionsRequest, body)
    return body["model"], bool(body.get("stream"))


def _prompt_tokens(spec: ModelSpec, prompt: Any) -> int:
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)  # already tokens
        return sum(tokens.count_text(str(p), spec.encoding) for p in prompt)
    return tokens.count_text(prompt, spec.encoding)


@router.post("/v1/completions")
async def completions(
    request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)
) -> Response:
    """OpenAI legacy completions, JSON or form-encoded; Claude models answer through chat."""
    body = await parse_body(request, rt.settings.max_body_bytes)
    if isinstance(body, FormFields):
        body = _typed(body)
    model, stream = validate_completions(body)
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "chat", request.scope["path"])
    if spec.wire != "openai" and isinstance(body["prompt"], list) and len(body["prompt"]) > 1:
        raise invalid(f"'{model}' answers one prompt per request: send 'prompt' as a string.", "prompt")
    plan = plan_for("completions", spec, body, stream)
    return await serve_call(
        request, rt, who, spec, plan,
        route="completions",
        stream=stream,
        input_tokens=_prompt_tokens(spec, body["prompt"]),
        max_output_tokens=output_allowance(
            spec, body, ("max_tokens",),
            choices=max(body.get("n") or 1, body.get("best_of") or 1) * _prompt_count(body["prompt"]),
            default=plan.body.get("max_tokens"),
        ),
    )


def _prompt_count(prompt: Any) -> int:
    """Several prompts in one legacy request each get their own completions."""
    if isinstance(prompt, list) and prompt and not all(isinstance(p, int) for p in prompt):
        return len(prompt)
    return 1


@router.post("/v1/claude/web/completion")
async def claude_web_completion(
    request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)
) -> Response:
    """`model`, `prompt`, `stream` (form or JSON), answered as a chat completion."""
    raw = await parse_body(request, rt.settings.max_body_bytes)
    prompt = field(raw, "prompt", str, required=True)
    body = {
        "model": field(raw, "model", str) or CLAUDE_WEB_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": loose_bool(raw, "stream"),
    }
    return await serve_chat(request, rt, who, body, route="claude_web")


# The model `/v1/claude/web/completion` serves when the request names none.
CLAUDE_WEB_MODEL = "claude-2-web"


# The Responses API is served by the chat family (one streaming function on AWS).
from .openai_responses import router as _responses_router  # noqa: E402

router.routes.extend(_responses_router.routes)  # its routes themselves, listed with this family's
