"""An Anthropic Messages client served by an OpenAI-wire model: the reverse of `chat_claude`.

`messages_to_chat` builds the chat request; `chat_to_message` and `MessageEvents` turn the answer
back into a Messages answer or the full Messages event sequence (`message_start`,
`content_block_start` / `_delta` / `_stop` per block, `message_delta` with usage, `message_stop`), so
the official Anthropic SDK parses it unchanged. Usage comes in `message_start` as the gateway's own
count of the input (OpenAI reports usage only at the end) and in `message_delta` as reported.
"""

from __future__ import annotations

from typing import Any

from ..billing.usage import Usage, from_openai
from . import json_object, json_text, text_of

__all__ = ["messages_to_chat", "chat_to_message", "MessageEvents", "anthropic_usage", "STOP_REASONS"]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def messages_to_chat(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The OpenAI chat request for a Messages request (fields without an equivalent dropped)."""
    messages: list[dict[str, Any]] = []
    system = text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif role == "assistant":
            messages.append(_assistant(content or ()))
        else:
            messages.extend(_user(content or ()))

    chat: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_tokens"):
        chat["max_completion_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), (int, float)):
            chat[name] = body[name]
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if user:
        chat["user"] = user
    tools = [
        {"type": "function", "function": {
            "name": tool["name"],
            **({"description": tool["description"]} if tool.get("description") else {}),
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }}
        for tool in body.get("tools") or ()
        # Anthropic's server tools (web search, code execution, ...) have no chat equivalent.
        if isinstance(tool, dict) and tool.get("name") and tool.get("type") in (None, "custom")
    ]
    if tools:
        chat["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            kind = choice.get("type")
            if kind in ("auto", "none"):
                chat["tool_choice"] = kind
            elif kind == "any":
                chat["tool_choice"] = "required"
            elif kind == "tool" and choice.get("name"):
                chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            if choice.get("disable_parallel_tool_use"):
                chat["parallel_tool_calls"] = False
    if body.get("stream"):
        chat["stream"] = True
    return chat


def chat_to_message(completion: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Messages answer for a chat completion."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reply.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": reply["reasoning_content"], "signature": ""})
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({
            "type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
            "input": json_object(fn.get("arguments")),
        })
    return {
        "id": "msg_" + str(completion.get("id") or "").removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


class MessageEvents:
    """chat.completion.chunk objects → the Messages event sequence, one chunk at a time."""

    def __init__(self, *, model: str, input_tokens: int = 0) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.started = False
        self.index = -1
        self.block: tuple[str, Any] | None = None  # the open block: ("text"|"thinking"|"tool", key)
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out = [] if self.started else self._start(chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content")
            if thinking:
                if self.block != ("thinking", None):
                    out += self._open(("thinking", None), {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
            text = delta.get("content")
            if text:
                if self.block != ("text", None):
                    out += self._open(("text", None), {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                key = call.get("index", 0)
                fn = call.get("function") or {}
                if self.block != ("tool", key):
                    out += self._open(("tool", key), {
                        "type": "tool_use", "id": call.get("id") or f"toolu_{key}",
                        "name": fn.get("name") or "", "input": {},
                    })
                if fn.get("arguments"):
                    out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
            finish = choice.get("finish_reason")
            if finish:
                self.stop_reason = STOP_REASONS.get(finish, "end_turn")
                out += self._close()
        return out

    def finish(self) -> list[dict[str, Any]]:
        out = [] if self.started else self._start({})
        out += self._close()
        usage = anthropic_usage(self.usage) if self.usage else {"output_tokens": 0}
        out.append({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
            "usage": usage,
        })
        out.append({"type": "message_stop"})
        return out

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.started = True
        return [{"type": "message_start", "message": {
            "id": "msg_" + str(chunk.get("id") or "").removeprefix("chatcmpl-"), "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }}]

    def _open(self, key: tuple[str, Any], block: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close()
        self.index += 1
        self.block = key
        out.append({"type": "content_block_start", "index": self.index, "content_block": block})
        return out

    def _close(self) -> list[dict[str, Any]]:
        if self.block is None:
            return []
        self.block = None
        return [{"type": "content_block_stop", "index": self.index}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic's usage object for OpenAI's: cached prompt tokens are cache reads, not input."""
    u = from_openai(usage) or Usage()
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


def _assistant(blocks: Any) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            calls.append({
                "id": block.get("id") or "", "type": "function",
                "function": {"name": block.get("name") or "", "arguments": json_text(block.get("input"))},
            })
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _user(blocks: Any) -> list[dict[str, Any]]:
    """Tool results become `tool` messages (first, as OpenAI wants them right after the call)."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            text = text_of(block.get("content"))
            if block.get("is_error") and not text:
                text = "error"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            url = _image_url(block.get("source") or {})
            if url:
                parts.append({"type": "image_url", "image_url": {"url": url}})
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text and len(parts) == 1
                    else parts})
    return out


def _image_url(source: dict[str, Any]) -> str | None:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
    if source.get("type") == "url":
        return source.get("url")
    return None
