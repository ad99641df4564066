"""A fake Anthropic Messages API that validates and streams like the real one, for tests and benchmarks.

It refuses what the real API refuses — a missing `x-api-key` or `anthropic-version`, a missing
`max_tokens`, fields it does not know, a `system` role inside `messages`, a first message that is not
`user`, roles that do not alternate, empty text blocks, a `tool_result` without its `tool_use` — so a
translation that would fail against Anthropic fails here too. Streams are the real event sequence:
`message_start`, `content_block_start`, a `ping`, `content_block_delta` (`text_delta`,
`input_json_delta`, `thinking_delta`), `content_block_stop`, `message_delta` with usage, `message_stop`.

Every request is recorded (path, headers, JSON body). Behaviour per upstream model id through
`FakeAnthropic.behaviors`:
  status       answer this HTTP status with an Anthropic error body (`message` for its text)
  delay        seconds to wait before answering
  chunk_delay  seconds between stream events
  fail_after   break the stream after this many text deltas (dropping the connection)
  error_event  with `fail_after`: send `event: error` (overloaded_error) instead of dropping
  text         the answer's text (default "Hello from the fake Claude")
  thinking     thinking text to answer with before the text (also whenever `thinking` is requested)
  tool_use     {"name", "input"}: answer with this tool call after the text
  stop_reason  the stop reason (default end_turn, tool_use with a tool call)
  usage        a dict to report instead of the default
  cached       report cache writes (5) and reads (4) too
  input_tokens what count_tokens answers (default 4242)
A request that forces a tool (`tool_choice` of type `tool`) is answered with that tool's call, its
input `tool_input` (default {"answer": "fake"}).
Default usage: input_tokens 13, output_tokens 9.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_upstream import Received

ANTHROPIC_OPERATOR_KEY = "sk-ant-operator-upstream-credential-000000000000"
DEFAULT_TEXT = "Hello from the fake Claude"

_MESSAGES_FIELDS = {
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking", "service_tier", "container", "mcp_servers",
    "context_management",
}
_COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management"}
_BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}


class Invalid(Exception):
    pass


@dataclass
class FakeAnthropic:
    api_key: str = ANTHROPIC_OPERATOR_KEY
    behaviors: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    record: bool = True  # benchmarks turn recording off
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
        ])

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.received if r.body.get("model") == model]

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)

    async def _admit(self, request: Request, counting: bool) -> tuple[Response | None, dict, dict]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "There was an issue with the JSON body of your request."), {}, {}
        if self.record:
            self.received.append(Received(request.url.path, dict(request.headers), body))
        if not request.headers.get("x-api-key"):
            return self._error(401, "x-api-key header is required", "authentication_error"), body, {}
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "invalid x-api-key", "authentication_error"), body, {}
        if not request.headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required"), body, {}
        try:
            validate(body, counting)
        except Invalid as exc:
            return self._error(400, str(exc)), body, {}
        behavior = self.behaviors.get(body["model"], {})
        if behavior.get("delay"):
            await asyncio.sleep(behavior["delay"])
        if behavior.get("status"):
            status = behavior["status"]
            kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                    429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            if status == 400:
                kind = "invalid_request_error"
            return self._error(status, behavior.get("message", f"fake upstream error {status}"), kind), body, behavior
        return None, body, behavior

    async def count_tokens(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, counting=True)
        if refused is not None:
            return refused
        return JSONResponse({"input_tokens": behavior.get("input_tokens", 4242)})

    def _usage(self, behavior: dict) -> dict[str, Any]:
        if isinstance(behavior.get("usage"), dict):
            return dict(behavior["usage"])
        usage: dict[str, Any] = {"input_tokens": 13, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "output_tokens": 9}
        if behavior.get("cached"):
            usage.update(cache_creation_input_tokens=5, cache_read_input_tokens=4)
        return usage

    def _blocks(self, body: dict, behavior: dict) -> tuple[list[dict[str, Any]], str]:
        """The answer's content blocks and stop reason."""
        blocks: list[dict[str, Any]] = []
        thinking = behavior.get("thinking")
        if thinking is None and isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled":
            thinking = "Let me think about this."
        if thinking:
            blocks.append({"type": "thinking", "thinking": thinking, "signature": "sig-fake"})
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            blocks.append({"type": "tool_use", "id": "toolu_fake1", "name": choice["name"],
                           "input": behavior.get("tool_input", {"answer": "fake"})})
            return blocks, "tool_use"
        blocks.append({"type": "text", "text": behavior.get("text", DEFAULT_TEXT)})
        stop = behavior.get("stop_reason", "end_turn")
        if behavior.get("tool_use"):
            tool = behavior["tool_use"]
            blocks.append({"type": "tool_use", "id": "toolu_fake1", "name": tool["name"], "input": tool["input"]})
            stop = behavior.get("stop_reason", "tool_use")
        return blocks, stop

    async def messages(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, counting=False)
        if refused is not None:
            return refused
        blocks, stop = self._blocks(body, behavior)
        usage = self._usage(behavior)
        if not body.get("stream"):
            return JSONResponse({
                "id": "msg_fake01", "type": "message", "role": "assistant", "model": body["model"],
                "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage,
            })
        return StreamingResponse(self._stream(body, behavior, blocks, stop, usage), media_type="text/event-stream")

    async def _stream(self, body, behavior, blocks, stop, usage):
        def event(data: dict[str, Any]) -> bytes:
            return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

        start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
        start_usage["output_tokens"] = 1
        yield event({"type": "message_start", "message": {
            "id": "msg_fake01", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
        sent_text = 0
        for index, block in enumerate(blocks):
            kind = block["type"]
            empty = {"text": {"type": "text", "text": ""},
                     "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                     "tool_use": {**block, "input": {}}}[kind]
            yield event({"type": "content_block_start", "index": index, "content_block": empty})
            if index == 0:
                yield event({"type": "ping"})
            if kind == "text":
                words = block["text"].split(" ")
                pieces = [w + " " for w in words[:-1]] + [words[-1]]
                deltas = [{"type": "text_delta", "text": p} for p in pieces]
            elif kind == "thinking":
                deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                          {"type": "signature_delta", "signature": block["signature"]}]
            else:
                raw = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": raw[i:i + 7]} for i in range(0, len(raw), 7)]
            for delta in deltas:
                if kind == "text" and behavior.get("fail_after") is not None and sent_text >= behavior["fail_after"]:
                    if behavior.get("error_event"):
                        yield event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                        return
                    raise RuntimeError("fake upstream drops the connection")
                if behavior.get("chunk_delay"):
                    await asyncio.sleep(behavior["chunk_delay"])
                yield event({"type": "content_block_delta", "index": index, "delta": delta})
                sent_text += kind == "text"
            yield event({"type": "content_block_stop", "index": index})
        yield event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                     "usage": {"output_tokens": usage.get("output_tokens", 0)}})
        yield event({"type": "message_stop"})


def validate(body: dict[str, Any], counting: bool) -> None:
    """The Messages API's request checks that a translation could get wrong."""
    allowed = _COUNT_FIELDS if counting else _MESSAGES_FIELDS
    for name in body:
        if name not in allowed:
            raise Invalid(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    if not counting:
        if "max_tokens" not in body:
            raise Invalid("max_tokens: Field required")
        if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
            raise Invalid("max_tokens: Input should be a valid integer greater than 0")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required" if messages is None else "messages: at least one message is required")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise Invalid("system: Input should be a valid string or list")
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant' (got {role!r})")
        if i == 0 and role != "user":
            raise Invalid("messages: first message must use the \"user\" role")
        if i > 0 and messages[i - 1].get("role") == role:
            raise Invalid("messages: roles must alternate between \"user\" and \"assistant\"")
        content = message.get("content")
        if isinstance(content, str):
            if not content and not (i == len(messages) - 1 and role == "assistant"):
                raise Invalid(f"messages.{i}: all messages must have non-empty content")
            previous_tool_ids = set()
            continue
        if not isinstance(content, list) or not content:
            raise Invalid(f"messages.{i}.content: all messages must have non-empty content")
        tool_ids: set[str] = set()
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            where = f"messages.{i}.content.{j}"
            if kind not in _BLOCK_TYPES:
                raise Invalid(f"{where}.type: unknown content block type {kind!r}")
            if kind == "text" and not block.get("text"):
                raise Invalid(f"{where}.text: text content blocks must be non-empty")
            if kind == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64" and not (source.get("media_type") and source.get("data")):
                    raise Invalid(f"{where}.source: base64 images need media_type and data")
                if source.get("type") not in ("base64", "url"):
                    raise Invalid(f"{where}.source.type: Input should be 'base64' or 'url'")
            if kind == "tool_use":
                if role != "assistant":
                    raise Invalid(f"{where}: tool_use blocks may only appear in assistant messages")
                if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                    raise Invalid(f"{where}: tool_use needs id, name and an object input")
                tool_ids.add(block["id"])
            if kind == "tool_result":
                if role != "user":
                    raise Invalid(f"{where}: tool_result blocks may only appear in user messages")
                if block.get("tool_use_id") not in previous_tool_ids:
                    raise Invalid(f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                  f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                                  "`tool_use` block in the previous message.")
        previous_tool_ids = tool_ids
    temperature = body.get("temperature")
    if temperature is not None and not (0 <= temperature <= 1):
        raise Invalid("temperature: Input should be less than or equal to 1")
    tools = body.get("tools") or []
    for k, tool in enumerate(tools):
        if not tool.get("name") or (tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict)):
            raise Invalid(f"tools.{k}: name and input_schema are required")
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise Invalid("tool_choice: may only be specified while providing tools")
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice.get("type") == "tool" and choice.get("name") not in {t.get("name") for t in tools}:
            raise Invalid("tool_choice.name: no tool with this name")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if not counting and budget >= body["max_tokens"]:
            raise Invalid("max_tokens must be greater than thinking.budget_tokens")
        if choice is not None and choice.get("type") in ("any", "tool"):
            raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
        if temperature is not None and temperature != 1:
            raise Invalid("temperature may only be set to 1 when thinking is enabled.")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or any(not isinstance(s, str) or not s.strip() for s in stops)):
        raise Invalid("stop_sequences: each stop sequence must contain non-whitespace")
