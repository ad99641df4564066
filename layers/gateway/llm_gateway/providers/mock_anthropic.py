"""The mock provider's Anthropic side and its tool calls, for both wires.

`mock-claude` speaks Anthropic's Messages API (the catalog gives it `"wire": "anthropic"`), so the
gateway's Claude translation (chat, legacy completions, Responses → Messages and back) runs against
it with no account; `mock-gpt` speaks OpenAI's. Both answer with a deterministic tool call when the
request offers tools and asks for one: the tool choice forces a tool (`required`, a named function,
Anthropic's `any` or `tool`), or the last user message names one of the offered tools. The call's
arguments fill the tool's required parameters by type (strings get the user's words). A request whose
last turn is a tool's result is answered in text, so a tool loop ends after one round.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from .. import tokens
from .base import Event

ENCODING = "cl100k_base"


# --- tools (both wires) ---------------------------------------------------------------------------

def tool_call(tools: list[dict[str, Any]], forced: str | bool, last_user_text: str) -> tuple[str, dict] | None:
    """(tool name, arguments) when the request offers `tools` and asks for one, else None.
    `forced`: a tool's name, True for "any tool", False for the model's own choice."""
    if not tools:
        return None
    chosen = None
    if isinstance(forced, str):
        chosen = next((t for t in tools if t["name"] == forced), None)
    elif forced:
        chosen = tools[0]
    else:
        words = set(last_user_text.replace("_", " ").lower().split()) | {last_user_text.lower()}
        chosen = next((t for t in tools if t["name"].lower() in words
                       or t["name"].lower() in last_user_text.lower()), None)
    if chosen is None:
        return None
    return chosen["name"], _arguments(chosen.get("schema") or {}, last_user_text)


def _arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    found = schema.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    listed = schema.get("required")
    required: list[Any] = listed if isinstance(listed, list) else list(properties)
    args: dict[str, Any] = {}
    for name in required:
        spec: dict[str, Any] = properties[name] if isinstance(properties.get(name), dict) else {}
        kind = spec.get("type")
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            args[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = " ".join(text.split()[:8]) or "mock"
    return args


def tool_result_reply(result: str) -> str:
    return f"The tool returned: {' '.join(result.split()[:24])}"


# --- Anthropic Messages --------------------------------------------------------------------------

def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _tool_result(content: Any) -> str | None:
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                return _text_of(inner) if not isinstance(inner, str) else inner
    return None


def _plan(body: dict[str, Any]) -> tuple[str | None, tuple[str, dict] | None, int]:
    """(answer text, or a tool call) and the input tokens of a Messages request."""
    from .mock import reply_text

    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    input_tokens = tokens.count_messages(messages, ENCODING, system=body.get("system"), tools=body.get("tools"))
    result = _tool_result(last.get("content")) if last.get("role") == "user" else None
    if result is not None:
        return tool_result_reply(result), None, input_tokens
    user_text = _text_of(last.get("content")) if last.get("role") == "user" else ""
    choice: dict[str, Any] = body["tool_choice"] if isinstance(body.get("tool_choice"), dict) else {}
    forced: str | bool = str(choice.get("name") or "") if choice.get("type") == "tool" else choice.get("type") == "any"
    offered = [{"name": t.get("name"), "schema": t.get("input_schema")} for t in body.get("tools") or []
               if isinstance(t, dict) and isinstance(t.get("name"), str)]
    call = None if choice.get("type") == "none" else tool_call(offered, forced, user_text)
    return (None if call else reply_text(user_text)), call, input_tokens


def _pieces(text: str, cap: Any) -> tuple[list[str], str]:
    enc = tokens.encoding(ENCODING)
    ids = enc.encode_ordinary(text)
    if isinstance(cap, int) and 0 < cap < len(ids):
        return [enc.decode([i]) for i in ids[:cap]], "max_tokens"
    return [enc.decode([i]) for i in ids], "end_turn"


def message(body: dict[str, Any], model: str) -> dict[str, Any]:
    text, call, input_tokens = _plan(body)
    if call is not None:
        content: list[dict[str, Any]] = [{"type": "tool_use", "id": "toolu_mock" + uuid.uuid4().hex[:16],
                                          "name": call[0], "input": call[1]}]
        output_tokens, stop = len(tokens.encoding(ENCODING).encode_ordinary(json.dumps(call[1]))), "tool_use"
    else:
        pieces, stop = _pieces(text or "", body.get("max_tokens"))
        content, output_tokens = [{"type": "text", "text": "".join(pieces)}], len(pieces)
    return {"id": "msg_mock" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


def count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": _plan(body)[2]}


async def events(body: dict[str, Any], model: str, delay: float) -> AsyncGenerator[Event, None]:
    """The full Messages event sequence of `message(body, model)`."""
    answer = message(body, model)
    usage = answer["usage"]
    yield {"type": "message_start", "message": {**answer, "content": [], "stop_reason": None,
                                                "usage": {**usage, "output_tokens": 1}}}
    block = answer["content"][0]
    if block["type"] == "tool_use":
        yield {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}}
        arguments = json.dumps(block["input"])
        middle = len(arguments) // 2
        parts = [arguments[:middle], arguments[middle:]]
        deltas: list[dict[str, Any]] = [{"type": "input_json_delta", "partial_json": p} for p in parts if p]
    else:
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        pieces, _ = _pieces(block["text"], None)
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    for delta in deltas:
        await asyncio.sleep(delay)
        yield {"type": "content_block_delta", "index": 0, "delta": delta}
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "message_delta", "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
           "usage": {"output_tokens": usage["output_tokens"]}}
    yield {"type": "message_stop"}
