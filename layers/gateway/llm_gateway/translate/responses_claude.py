"""An OpenAI Responses client served by Claude (or any model the gateway reaches through Messages).

The request goes Responses → chat (`responses_to_chat`) and then through `chat_claude`, so every
rule of the chat translation (system text, alternating turns, images, tools, the forced JSON tool
for a schema, thinking budgets, sampling limits) is written once. The answer comes back from the
Messages API straight to the Responses shape (`message_to_response`, and `ResponseEvents` for the
stream): Messages content blocks map one to one onto Responses output items (`thinking` → a
`reasoning` item with its summary text, `text` → a `message` with one `output_text`, `tool_use` →
a `function_call`), which the chat shape in between would blur.

`response_shell` is the Response object as the request defines it (what it echoes back: model,
instructions, tools, ...), before any output; the answer fills in output, status and usage.
Every stream event carries `sequence_number`, counted from 0 as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..billing.usage import Usage, from_anthropic
from ..errors import invalid
from . import json_text, text_of
from .chat_claude import message_parts

__all__ = [
    "HOSTED_TOOLS",
    "responses_to_chat",
    "response_input",
    "response_shell",
    "message_to_response",
    "ResponseEvents",
    "responses_usage",
]

# Tools that only OpenAI runs: a translated model cannot offer them (API.md 3.8).
HOSTED_TOOLS = (
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
    "file_search", "code_interpreter", "computer_use", "computer_use_preview", "image_generation", "mcp",
    "local_shell", "shell", "apply_patch", "custom",
)
# Input item types a translated model understands; `reasoning` items are accepted and dropped (the
# chat form has no place for them, and Claude does not need its own summaries back).
_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
_INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
               "refusal": "content_filter"}


# --------------------------------------------------------------------------------------------------
# requests


def response_input(body: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """The request's `input` as a list of items, each with an id (`input_items` lists them so)."""
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise invalid("'input' must be a string or an array of input items.", "input")
    items: list[dict[str, Any]] = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise invalid(f"Invalid 'input[{n}]': expected an object.", f"input[{n}]")
        kind = item.get("type") or ("message" if "role" in item else None)
        out = {**item, "type": kind}
        if isinstance(out.get("content"), str) and kind == "message":
            part = "output_text" if out.get("role") == "assistant" else "input_text"
            out["content"] = [{"type": part, "text": out["content"]}]
        if not out.get("id"):
            out["id"] = f"{_ID_PREFIXES.get(str(kind), 'item')}_{base}_{n}"
        items.append(out)
    return items


def responses_to_chat(
    body: dict[str, Any], *, model: str, history: Iterable[dict[str, Any]] = (), strict: bool = True
) -> dict[str, Any]:
    """The chat request for a Responses request whose conversation so far is `history` (the input and
    output items of the `previous_response_id` chain). `strict`: refuse what the chat form cannot
    carry (a translated model); otherwise skip it (counting the input of a forwarded request)."""
    messages: list[dict[str, Any]] = []
    instructions = text_of(body.get("instructions"))
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for n, item in enumerate([*history, *response_input(body, "in")]):
        _add_item(messages, item, n, strict)

    chat: dict[str, Any] = {"model": model, "messages": messages}
    tools = _chat_tools(body.get("tools"), model, strict)
    if tools:
        chat["tools"] = tools
        choice = _chat_tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "description", "strict") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if isinstance(effort, str) and effort != "none":
        chat["reasoning_effort"] = effort
    if isinstance(body.get("max_output_tokens"), int):
        chat["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(name) is not None:
            chat[name] = body[name]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.get("stream"):
        chat["stream"] = True
    return chat


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], n: int, strict: bool) -> None:
    kind = item.get("type")
    if kind == "message":
        role = item.get("role") or "user"
        if role == "assistant":
            text = "".join(str(p.get("text") or p.get("refusal") or "") for p in item.get("content") or ()
                           if isinstance(p, dict))
            if text:
                messages.append({"role": "assistant", "content": text})
        else:
            parts = [p for p in (_chat_part(part, n, strict) for part in item.get("content") or ()) if p]
            if parts:
                messages.append({"role": "user" if role == "user" else "system",
                                 "content": parts if role == "user" else text_of(parts)})
    elif kind == "function_call":
        call = {"id": item.get("call_id") or item.get("id") or "", "type": "function",
                "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or "{}"}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": item.get("call_id") or "",
                         "content": output if isinstance(output, str) else text_of(
                             [{"type": "text", "text": p.get("text")} for p in output or () if isinstance(p, dict)])})
    elif kind not in _ITEM_TYPES and strict:
        raise invalid(f"Invalid 'input[{n}].type': input items of type '{kind}' are not supported by this model.",
                      f"input[{n}].type")


def _chat_part(part: Any, n: int, strict: bool) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "input_image" and part.get("image_url"):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    if strict:
        what = "input_image with a file_id" if kind == "input_image" else f"'{kind}'"
        raise invalid(f"Invalid 'input[{n}].content': {what} content is not supported by this model.",
                      f"input[{n}].content")
    return None


def _chat_tools(tools: Any, model: str, strict: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, tool in enumerate(tools or ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function" and tool.get("name"):
            fn = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
            if tool.get("description"):
                fn["description"] = tool["description"]
            out.append({"type": "function", "function": fn})
        elif strict:
            name = kind if kind in HOSTED_TOOLS else f"'{kind}'"
            raise invalid(f"The tool {name} is run only by OpenAI: the model '{model}' supports function tools "
                          "only.", f"tools[{k}].type")
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        if choice.get("type") == "function" and choice.get("name"):
            return {"type": "function", "function": {"name": choice["name"]}}
        if choice.get("type") == "allowed_tools":
            return "required" if choice.get("mode") == "required" else "auto"
    return None


# --------------------------------------------------------------------------------------------------
# answers


def response_shell(body: dict[str, Any], *, response_id: str, model: str, created_at: int) -> dict[str, Any]:
    """The Response object as the request defines it, before any output (status `in_progress`)."""
    found = body.get("reasoning")
    reasoning: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
    }


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's Responses usage for Anthropic's: input tokens include the cache reads and writes."""
    u = from_anthropic(usage or {}) or Usage()
    return {
        "input_tokens": u.total_input,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_input + u.output_tokens,
    }


def message_to_response(message: dict[str, Any], *, shell: dict[str, Any], json_tool: str | None = None
                        ) -> dict[str, Any]:
    """The Response for a whole Messages answer."""
    base = _base(shell)
    output: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        index = len(output)
        if kind == "thinking":
            output.append(_reasoning(base, index, block.get("thinking") or ""))
        elif kind == "text" or (kind == "tool_use" and json_tool is not None and block.get("name") == json_tool):
            output.append(_message(base, index, message_parts({"content": [block]}, json_tool)[0][0]))
        elif kind == "tool_use":
            output.append(_function_call(base, index, block, json_text(block.get("input"))))
    return _finished(shell, output, message.get("stop_reason"), message.get("usage"))


def _finished(shell: dict[str, Any], output: list[dict[str, Any]], stop_reason: str | None,
              usage: dict[str, Any] | None) -> dict[str, Any]:
    reason = _INCOMPLETE.get(stop_reason or "")
    return {**shell, "status": "incomplete" if reason else "completed",
            "incomplete_details": {"reason": reason} if reason else None,
            "output": output, "usage": responses_usage(usage)}


def _base(shell: dict[str, Any]) -> str:
    return str(shell["id"]).removeprefix("resp_")


def _message(base: str, index: int, text: str, status: str = "completed") -> dict[str, Any]:
    content = [_text_part(text)] if status == "completed" else []
    return {"id": f"msg_{base}_{index}", "type": "message", "status": status, "role": "assistant",
            "content": content}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning(base: str, index: int, text: str | None) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text is not None else []
    return {"id": f"rs_{base}_{index}", "type": "reasoning", "summary": summary}


def _function_call(base: str, index: int, block: dict[str, Any], arguments: str,
                   status: str = "completed") -> dict[str, Any]:
    call_id = str(block.get("id") or f"call_{base}_{index}")
    return {"id": f"fc_{call_id.removeprefix('toolu_')}", "type": "function_call", "status": status,
            "call_id": call_id, "name": block.get("name") or "", "arguments": arguments}


class ResponseEvents:
    """Messages stream events → the Responses event sequence, one event at a time.

    `response.created` and `response.in_progress` at `message_start`; per content block its output
    item (`output_item.added` … `output_item.done`, with the content part or reasoning summary part
    and their deltas in between); `response.completed` (or `response.incomplete` when the output cap
    was reached) at `message_stop`, carrying the whole Response, which `response` then holds.
    """

    def __init__(self, *, shell: dict[str, Any], json_tool: str | None = None) -> None:
        self.response = shell
        self.json_tool = json_tool
        self.base = _base(shell)
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.started = False
        self.done = False
        # Anthropic block index → (kind, output index, item, accumulated text)
        self._open: dict[Any, tuple[str, int, dict[str, Any], list[str]]] = {}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        out: list[dict[str, Any]] = []
        if kind == "content_block_delta":
            self._delta(out, event)
        elif kind == "content_block_start":
            self._block_start(out, event)
        elif kind == "content_block_stop":
            self._block_stop(out, event.get("index"))
        elif kind == "message_start":
            message = event.get("message") or {}
            self.usage = dict(message.get("usage") or {})
            self._start(out)
        elif kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self._complete(out)
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.done:
            self._start(out)
            self._complete(out)
        return out

    def fail(self, code: str, message: str) -> list[dict[str, Any]]:
        """What ends a stream that broke after output began: an `error` event and `response.failed`."""
        out: list[dict[str, Any]] = []
        self._start(out)
        self._emit(out, {"type": "error", "code": code, "message": message, "param": None})
        self.done = True
        self.response = {**self.response, "status": "failed", "error": {"code": code, "message": message},
                         "output": list(self.output), "usage": responses_usage(self.usage)}
        self._emit(out, {"type": "response.failed", "response": self.response})
        return out

    # ------------------------------------------------------------------------------------------
    def _emit(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        event["sequence_number"] = self.sequence
        self.sequence += 1
        out.append(event)

    def _start(self, out: list[dict[str, Any]]) -> None:
        if self.started:
            return
        self.started = True
        self._emit(out, {"type": "response.created", "response": {**self.response, "output": []}})
        self._emit(out, {"type": "response.in_progress", "response": {**self.response, "output": []}})

    def _complete(self, out: list[dict[str, Any]]) -> None:
        for index in list(self._open):
            self._block_stop(out, index)
        self.done = True
        self.response = _finished(self.response, self.output, self.stop_reason, self.usage)
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        self._emit(out, {"type": kind, "response": self.response})

    def _block_start(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        block = event.get("content_block") or {}
        btype = block.get("type")
        index = len(self.output) + len(self._open)
        forced_json = btype == "tool_use" and self.json_tool is not None and block.get("name") == self.json_tool
        if btype == "text" or forced_json:
            item = _message(self.base, index, "", status="in_progress")
            self._added(out, event.get("index"), "text", index, item)
            self._emit(out, {"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                             "content_index": 0, "part": _text_part("")})
            if btype == "text" and block.get("text"):
                self._delta(out, {"index": event.get("index"), "delta": {"type": "text_delta", "text": block["text"]}})
        elif btype == "thinking":
            item = _reasoning(self.base, index, None)
            self._added(out, event.get("index"), "thinking", index, item)
            self._emit(out, {"type": "response.reasoning_summary_part.added", "item_id": item["id"],
                             "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        elif btype == "tool_use":
            item = _function_call(self.base, index, block, "", status="in_progress")
            self._added(out, event.get("index"), "tool", index, item)

    def _added(self, out: list[dict[str, Any]], block_index: Any, kind: str, index: int, item: dict[str, Any]) -> None:
        self._open[block_index] = (kind, index, item, [])
        self._emit(out, {"type": "response.output_item.added", "output_index": index, "item": dict(item)})

    def _delta(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        found = self._open.get(event.get("index"))
        if found is None:
            return
        kind, index, item, texts = found
        delta = event.get("delta") or {}
        piece = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
        if not piece:
            return
        texts.append(piece)
        if kind == "text":
            self._emit(out, {"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                             "content_index": 0, "delta": piece, "logprobs": []})
        elif kind == "thinking":
            self._emit(out, {"type": "response.reasoning_summary_text.delta", "item_id": item["id"],
                             "output_index": index, "summary_index": 0, "delta": piece})
        else:
            self._emit(out, {"type": "response.function_call_arguments.delta", "item_id": item["id"],
                             "output_index": index, "delta": piece})

    def _block_stop(self, out: list[dict[str, Any]], block_index: Any) -> None:
        found = self._open.pop(block_index, None)
        if found is None:
            return
        kind, index, item, texts = found
        text = "".join(texts)
        ref = {"item_id": item["id"], "output_index": index}
        if kind == "text":
            self._emit(out, {"type": "response.output_text.done", **ref, "content_index": 0, "text": text,
                             "logprobs": []})
            self._emit(out, {"type": "response.content_part.done", **ref, "content_index": 0,
                             "part": _text_part(text)})
            done = _message(self.base, index, text)
        elif kind == "thinking":
            part = {"type": "summary_text", "text": text}
            self._emit(out, {"type": "response.reasoning_summary_text.done", **ref, "summary_index": 0, "text": text})
            self._emit(out, {"type": "response.reasoning_summary_part.done", **ref, "summary_index": 0, "part": part})
            done = _reasoning(self.base, index, text)
        else:
            done = {**item, "status": "completed", "arguments": text or "{}"}
            self._emit(out, {"type": "response.function_call_arguments.done", **ref, "arguments": done["arguments"]})
        self.output.append(done)
        self._emit(out, {"type": "response.output_item.done", "output_index": index, "item": done})
