"""An OpenAI chat client served by Claude: chat request → Messages request, Messages answer → chat.

`chat_to_messages` maps every chat field that has a Messages equivalent (API.md 3.1) and drops the
rest, because the Messages API refuses fields it does not know. `message_to_chat` and `ChatChunks`
map the answer back, whole or event by event, so the official OpenAI SDK parses it unchanged.

A `response_format` with a JSON schema becomes one forced tool whose input schema is the requested
schema; the tool's input is what the client receives as the message content (streamed as content
deltas), so the client sees JSON mode, not a tool call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..billing.usage import Usage, from_anthropic
from . import json_object, json_text, text_of

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "ClaudeRequest",
    "chat_to_messages",
    "message_to_chat",
    "message_parts",
    "ChatChunks",
    "chat_usage",
    "finish_reason",
]

# What a chat request without max_tokens may produce (the Messages API requires a number).
DEFAULT_MAX_TOKENS = 4096
# Messages must start with a user turn; a conversation that does not gets this one in front.
OPENING_TURN = "."
JSON_TOOL_NAME = "json_response"
# reasoning_effort → thinking budget (Anthropic's minimum budget is 1024 tokens).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(frozen=True)
class ClaudeRequest:
    body: dict[str, Any]
    json_tool: str | None = None  # the forced tool standing in for response_format, if any


def chat_to_messages(
    chat: dict[str, Any], *, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> ClaudeRequest:
    """The Messages request for an OpenAI chat request."""
    system, messages = _conversation(chat.get("messages") or ())
    body: dict[str, Any] = {"model": model}
    explicit_max = chat.get("max_completion_tokens") or chat.get("max_tokens")
    max_tokens = explicit_max or default_max_tokens
    if system:
        body["system"] = system
    body["messages"] = messages

    thinking = _thinking(chat)
    if thinking is not None and thinking.get("type") == "enabled":
        budget = int(thinking.get("budget_tokens") or THINKING_BUDGETS["low"])
        if explicit_max:
            # max_completion_tokens caps reasoning and answer together, as OpenAI counts it.
            budget = min(budget, max(max_tokens // 2, 1024))
            if budget >= max_tokens:
                thinking = None
        else:
            max_tokens += budget
        if thinking is not None:
            thinking = {**thinking, "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    if thinking is not None:
        body["thinking"] = thinking

    tools, tool_choice, json_tool = _tools(chat, thinking is not None)
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice

    stop = chat.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s.strip()]
    if stops:
        body["stop_sequences"] = stops
    if thinking is None:
        # Thinking refuses sampling changes; without it, OpenAI's 0..2 temperature caps at Claude's 1.
        if isinstance(chat.get("temperature"), (int, float)):
            body["temperature"] = min(float(chat["temperature"]), 1.0)
        if isinstance(chat.get("top_p"), (int, float)):
            body["top_p"] = chat["top_p"]
    if isinstance(chat.get("user"), str) and chat["user"]:
        body["metadata"] = {"user_id": chat["user"]}
    if chat.get("stream"):
        body["stream"] = True
    return ClaudeRequest(body, json_tool)


def message_to_chat(
    message: dict[str, Any], *, model: str, json_tool: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """The chat completion for a Messages answer."""
    texts, thoughts, calls = message_parts(message, json_tool)
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if thoughts:
        reply["reasoning_content"] = "".join(thoughts)
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(message.get("id") or "").removeprefix("msg_"),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": None,
            "finish_reason": finish_reason(message.get("stop_reason"), forced_json=json_tool is not None and not calls),
        }],
        "usage": chat_usage(message.get("usage")),
    }


def message_parts(
    message: dict[str, Any], json_tool: str | None = None
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """A Messages answer's texts, thinking texts and tool calls (in chat's shape).

    The forced JSON tool's input counts as text: it is the answer's content.
    """
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            if json_tool is not None and block.get("name") == json_tool:
                texts.append(json_text(block.get("input")))
            else:
                calls.append({
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json_text(block.get("input"))},
                })
    return texts, thoughts, calls


class ChatChunks:
    """Messages stream events → chat.completion.chunk objects, one event at a time."""

    def __init__(
        self, *, model: str, include_usage: bool = False, json_tool: str | None = None, created: int | None = None
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.json_tool = json_tool
        self.created = created if created is not None else int(time.time())
        self.id = "chatcmpl-"
        self.usage: dict[str, Any] = {}
        self._tool_slots: dict[Any, int] = {}  # Anthropic block index → OpenAI tool_calls index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [self._chunk({"content": delta.get("text") or ""})]
            if dtype == "input_json_delta":
                partial = delta.get("partial_json") or ""
                slot = self._tool_slots.get(event.get("index"))
                if slot is None:  # the forced JSON tool: its input is the answer's content
                    return [self._chunk({"content": partial})] if partial else []
                return [self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": partial}}]})]
            if dtype == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
            return []
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            btype = block.get("type")
            if btype == "tool_use" and block.get("name") != self.json_tool:
                slot = self._tool_slots[event.get("index")] = len(self._tool_slots)
                return [self._chunk({"tool_calls": [{
                    "index": slot, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }]})]
            if btype == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = "chatcmpl-" + str(message.get("id") or "").removeprefix("msg_")
            self.usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason")
            if stop:
                forced = self.json_tool is not None and not self._tool_slots
                return [self._chunk({}, finish_reason(stop, forced_json=forced))]
            return []
        if kind == "message_stop" and self.include_usage:
            return [{
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": chat_usage(self.usage),
            }]
        return []

    def finish(self) -> list[dict[str, Any]]:
        return []


def finish_reason(stop_reason: str | None, *, forced_json: bool = False) -> str:
    if forced_json and stop_reason == "tool_use":
        return "stop"
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def chat_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's usage object for Anthropic's: prompt tokens include the cache reads and writes."""
    u = from_anthropic(usage or {}) or Usage()
    prompt = u.total_input
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
    }


# --------------------------------------------------------------------------------------------------
# request helpers


def _conversation(chat_messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """System text, and turns that alternate starting with `user` (consecutive same roles merged)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in chat_messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system.append(text)
            continue
        if role == "assistant":
            blocks = _blocks(content)
            blocks.extend(_tool_use(call) for call in message.get("tool_calls") or () if isinstance(call, dict))
            _add_turn(turns, "assistant", blocks)
        elif role in ("tool", "function"):
            _add_turn(turns, "user", [_tool_result(message)])
        else:
            _add_turn(turns, "user", _blocks(content))
    if not turns and system:
        # Only system text: it is the whole request, and Messages needs at least one user turn.
        turns.append({"role": "user", "content": [{"type": "text", "text": "\n\n".join(system)}]})
        system = []
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": OPENING_TURN}]})
    return "\n\n".join(system), [{"role": t["role"], "content": _collapse(t["content"])} for t in turns]


def _add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if not part.get("text"):
                continue  # the Messages API refuses empty text blocks
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            block = _image(part.get("image_url"))
        else:
            continue  # audio, files and other parts have no Messages equivalent here
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    url = str(url or "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or "",
        "name": fn.get("name") or "",
        "input": json_object(fn.get("arguments")),
    }


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id") or ""}
    if isinstance(content, list):
        parts = _blocks(content)
        if parts:
            block["content"] = parts
    elif content:
        block["content"] = str(content)
    return block


def _thinking(chat: dict[str, Any]) -> dict[str, Any] | None:
    thinking = chat.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        return dict(thinking)
    effort = chat.get("reasoning_effort")
    if effort is None and isinstance(chat.get("reasoning"), dict):
        effort = chat["reasoning"].get("effort")
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    return {"type": "enabled", "budget_tokens": budget} if budget else None


def _tools(chat: dict[str, Any], thinking: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
    tools: list[dict[str, Any]] = []
    for tool in chat.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            continue
        out: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            out["description"] = fn["description"]
        out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        tools.append(out)

    choice: dict[str, Any] | None = None
    raw = chat.get("tool_choice")
    if raw in ("auto", "none"):
        choice = {"type": raw}
    elif raw == "required":
        choice = {"type": "any"}
    elif isinstance(raw, dict):
        name = (raw.get("function") or {}).get("name")
        if name:
            choice = {"type": "tool", "name": name}

    json_tool = None
    fmt = chat.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        json_tool = spec.get("name") or JSON_TOOL_NAME
        tools.append({
            "name": json_tool,
            "description": spec.get("description") or "Answer with JSON that matches this schema.",
            "input_schema": spec.get("schema") or {"type": "object"},
        })
        choice = {"type": "tool", "name": json_tool}

    if thinking and choice is not None and choice["type"] in ("any", "tool"):
        choice = {"type": "auto"}  # thinking allows no forced tool use
    if chat.get("parallel_tool_calls") is False and tools and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return tools, choice, json_tool
