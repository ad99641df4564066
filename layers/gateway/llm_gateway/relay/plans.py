"""Which plan serves a route for a model: one table keyed by (route, the model's upstream wire).

A model's wire format comes from the catalog (`ModelSpec.wire`), so a route never asks which
provider serves it: the same client shape is forwarded where the wires match and translated where
they differ. A new wire or route is one more row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..catalog import ModelSpec
from ..errors import GatewayError
from ..providers import offers
from ..translate.chat_claude import chat_to_messages
from .calls import Plan
from .passthrough import openai_chat_plan, openai_completions_plan, openai_responses_plan
from .translated import (
    TranslatedPlan,
    anthropic_messages_plan,
    as_legacy_complete,
    as_responses,
    claude_chat_plan,
    claude_completions_plan,
    default_max_tokens,
    openai_messages_plan,
)

Builder = Callable[..., Plan]

PLANS: dict[tuple[str, str], Builder] = {
    ("chat", "openai"): openai_chat_plan,
    ("chat", "anthropic"): claude_chat_plan,
    ("completions", "openai"): openai_completions_plan,
    ("completions", "anthropic"): claude_completions_plan,
    ("messages", "anthropic"): anthropic_messages_plan,
    ("messages", "openai"): openai_messages_plan,
}


def forwards_responses(spec: ModelSpec) -> bool:
    """Whether `/v1/responses` is forwarded to the model's upstream (it serves the Responses API)
    rather than translated through the Messages API (Claude, and the chat-only mock)."""
    return spec.wire == "openai" and offers(spec.provider, "responses")


def translated_responses_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, *, chat: dict[str, Any],
                              shell: dict[str, Any], input_tokens: int = 0, **_: Any) -> TranslatedPlan:
    """A Responses request, already in chat's form (`chat`), as a Messages request to the model
    (translated again where its wire is not Messages), its answer turned into the Response `shell`."""
    request = chat_to_messages(chat, model=spec.upstream_model, default_max_tokens=default_max_tokens(spec))
    inner = PLANS[("messages", spec.wire)](spec, request.body, stream, input_tokens=input_tokens)
    return as_responses(inner, shell, request.json_tool)  # type: ignore[arg-type]  # messages plans are translated


def responses_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, **kwargs: Any) -> Plan:
    if forwards_responses(spec):
        return openai_responses_plan(spec, body, stream)
    return translated_responses_plan(spec, body, stream, **kwargs)


PLANS[("responses", "openai")] = responses_plan
PLANS[("responses", "anthropic")] = translated_responses_plan


def plan_for(route: str, spec: ModelSpec, body: dict[str, Any], stream: bool, *,
             headers: dict[str, str] | None = None, input_tokens: int = 0, **route_args: Any) -> Plan:
    """The plan for `route` served by `spec`'s upstream; `complete` is a Messages plan made legacy."""
    if route == "complete":
        return as_legacy_complete(plan_for("messages", spec, body, stream, headers=headers,
                                           input_tokens=input_tokens), spec)  # type: ignore[arg-type]
    build = PLANS.get((route, spec.wire))
    if build is None:
        raise GatewayError("invalid_request", f"The model '{spec.name}' cannot be served on this route.", param="model")
    return build(spec, body, stream, headers=headers, input_tokens=input_tokens, **route_args)
