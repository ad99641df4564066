"""Server-Sent Events framing for the two client families."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import GatewayError

OPENAI_DONE = b"data: [DONE]\n\n"


def openai_event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def typed_event(data: dict[str, Any]) -> bytes:
    """`event: <type>` then the data, which repeats the type (Anthropic's events, OpenAI Responses')."""
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


anthropic_event = typed_event


def openai_error_events(err: GatewayError) -> list[bytes]:
    """A failure after output began (API.md 3.6): an error event, then the end marker."""
    return [openai_event(err.body("openai")), OPENAI_DONE]


def anthropic_error_events(err: GatewayError) -> list[bytes]:
    return [anthropic_event(err.body("anthropic"))]
