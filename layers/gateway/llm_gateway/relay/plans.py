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
from .calls import Plan
from .passthrough import openai_chat_plan, openai_completions_plan
from .translated import (
    anthropic_messages_plan,
    as_legacy_complete,
    claude_chat_plan,
    claude_completions_plan,
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


def plan_for(route: str, spec: ModelSpec, body: dict[str, Any], stream: bool, *,
             headers: dict[str, str] | None = None, input_tokens: int = 0) -> Plan:
    """The plan for `route` served by `spec`'s upstream; `complete` is a Messages plan made legacy."""
    if route == "complete":
        return as_legacy_complete(plan_for("messages", spec, body, stream, headers=headers,
                                           input_tokens=input_tokens), spec)  # type: ignore[arg-type]
    build = PLANS.get((route, spec.wire))
    if build is None:
        raise GatewayError("invalid_request", f"The model '{spec.name}' cannot be served on this route.", param="model")
    return build(spec, body, stream, headers=headers, input_tokens=input_tokens)
