"""The built-in mock provider: deterministic OpenAI-shaped answers, real streaming, real usage.

It lets a fresh install work end to end with no account anywhere, and gives tests and benchmarks a
provider that costs nothing. It speaks the OpenAI wire format (chat and legacy completions), so the
gateway's translation serves it on the Anthropic routes exactly as it serves any OpenAI model.
A model name containing `slow` waits 50 ms between chunks (for tests of disconnects and timing).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from .. import tokens
from ..errors import GatewayError
from . import mock_anthropic, mock_media, mock_search
from .base import ByteStream, Event, EventStream

ENCODING = "o200k_base"


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def reply_text(prompt: str) -> str:
    """The mock's deterministic answer to a prompt."""
    snippet = " ".join(prompt.split()[:24])
    return f"This is a mock response to: {snippet}" if snippet else "This is a mock response."


class MockProvider:
    name = "mock"
    operations = ("chat", "completions", "embeddings", "images", "speech", "messages", "count_tokens")

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        self._midjourney: Any = None

    def require_configured(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _answer(self, operation: str, body: dict[str, Any]) -> tuple[list[str], str, int]:
        if operation not in self.operations:
            raise GatewayError("invalid_request", f"The mock provider does not offer '{operation}'.")
        if operation == "completions":
            prompt = body.get("prompt")
            prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
            input_tokens = tokens.count_text(prompt_text, ENCODING)
            text = reply_text(prompt_text)
        else:
            messages = body.get("messages") or []
            input_tokens = tokens.count_messages(messages, ENCODING, tools=body.get("tools"))
            last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
            if last.get("role") == "tool":  # a tool loop's second turn: answered in words
                text = mock_anthropic.tool_result_reply(str(last.get("content") or ""))
            else:
                text = reply_text(_last_user_text(messages))
        enc = tokens.encoding(ENCODING)
        ids = enc.encode_ordinary(text)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(cap, int) and 0 < cap < len(ids):
            ids = ids[:cap]
            finish = "length"
        pieces = [enc.decode([i]) for i in ids]
        return pieces, finish, input_tokens

    async def send(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if operation in mock_search.OPERATIONS:
            return mock_search.answer(operation, body)
        if operation == "embeddings":
            return mock_media.embeddings(body, model)
        if operation == "images":
            return mock_media.images(body)
        if operation == "messages":
            return mock_anthropic.message(body, model)
        if operation == "count_tokens":
            return mock_anthropic.count_tokens(body)
        call = _chat_tool_call(body) if operation == "chat" else None
        if call is not None:
            return _tool_completion(body, model, call)
        pieces, finish, input_tokens = self._answer(operation, body)
        text = "".join(pieces)
        usage = {"prompt_tokens": input_tokens, "completion_tokens": len(pieces),
                 "total_tokens": input_tokens + len(pieces)}
        created = int(time.time())
        if operation == "completions":
            return {
                "id": "cmpl-mock" + uuid.uuid4().hex[:20], "object": "text_completion", "created": created,
                "model": model, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            }
        return {
            "id": "chatcmpl-mock" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage, "system_fingerprint": "fp_mock",
        }

    async def open_bytes(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> ByteStream:
        if operation != "speech":
            raise GatewayError("invalid_request", f"The mock provider does not offer '{operation}' as audio.")
        media_type, audio = mock_media.speech(mock_media.from_ssml(body) if "ssml" in body else body)

        async def chunks() -> AsyncGenerator[bytes, None]:
            for start in range(0, len(audio), 4096):
                yield audio[start:start + 4096]
                await asyncio.sleep(0)

        stream = chunks()
        return ByteStream(media_type, stream, stream.aclose)

    async def voices(self) -> list[dict[str, Any]]:
        return mock_media.VOICES

    # Midjourney (the task upstream llm_gateway.tasks drives): see mock_midjourney.
    @property
    def midjourney(self) -> Any:
        if self._midjourney is None:
            from .mock_midjourney import DEFAULT_SECONDS, MockMidjourney

            seconds = self.settings.secret("GATEWAY_MJ_MOCK_SECONDS") if self.settings is not None else None
            self._midjourney = MockMidjourney(float(seconds or DEFAULT_SECONDS))
        return self._midjourney

    async def task_submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.midjourney.submit(kind, body)

    async def task_fetch(self, upstream_id: str) -> dict[str, Any] | None:
        return self.midjourney.fetch(upstream_id)

    async def task_list(self, upstream_ids: list[str]) -> list[dict[str, Any]]:
        return [t for t in map(self.midjourney.fetch, upstream_ids) if t is not None]

    async def task_image(self, url: str) -> tuple[bytes, str]:
        return self.midjourney.image(url)

    async def stream(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> EventStream:
        delay = 0.05 if "slow" in model else 0.0
        call = _chat_tool_call(body) if operation == "chat" else None
        if operation == "messages":
            events = mock_anthropic.events(body, model, delay)
        elif call is not None:
            events = _tool_chunks(body, model, call)
        else:
            pieces, finish, input_tokens = self._answer(operation, body)
            events = self._events(operation, model, pieces, finish, input_tokens, delay)
        first = await anext(events)
        return EventStream(first, events, events.aclose)

    async def _events(
        self, operation: str, model: str, pieces: list[str], finish: str, input_tokens: int, delay: float
    ) -> AsyncGenerator[Event, None]:
        created = int(time.time())
        legacy = operation == "completions"
        ident = ("cmpl-mock" if legacy else "chatcmpl-mock") + uuid.uuid4().hex[:20]
        obj = "text_completion" if legacy else "chat.completion.chunk"

        def chunk(choice: dict[str, Any] | None, usage: dict[str, Any] | None = None) -> Event:
            event: Event = {"id": ident, "object": obj, "created": created, "model": model,
                            "choices": [choice] if choice else []}
            if not legacy:
                event["system_fingerprint"] = "fp_mock"
            if usage is not None:
                event["usage"] = usage
            return event

        if not legacy:
            yield chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None})
        for piece in pieces:
            if delay:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            if legacy:
                yield chunk({"index": 0, "text": piece, "logprobs": None, "finish_reason": None})
            else:
                yield chunk({"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None})
        if legacy:
            yield chunk({"index": 0, "text": "", "logprobs": None, "finish_reason": finish})
        else:
            yield chunk({"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish})
        yield chunk(None, {"prompt_tokens": input_tokens, "completion_tokens": len(pieces),
                           "total_tokens": input_tokens + len(pieces)})


# --- tool calls on the OpenAI wire (mock_anthropic has the rule) -----------------------------------

def _chat_tool_call(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    messages = body.get("messages") or []
    if not body.get("tools") or (messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    forced: str | bool = choice == "required"
    if isinstance(choice, dict):
        forced = str((choice.get("function") or {}).get("name") or "") or True
    functions = [t["function"] for t in body["tools"] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    offered = [{"name": f["name"], "schema": f.get("parameters")} for f in functions if isinstance(f.get("name"), str)]
    return mock_anthropic.tool_call(offered, forced, _last_user_text(messages))


def _tool_message(call: tuple[str, dict[str, Any]]) -> tuple[dict[str, Any], int]:
    import json

    arguments = json.dumps(call[1])
    ident = "call_mock" + uuid.uuid4().hex[:16]
    return ({"id": ident, "type": "function", "function": {"name": call[0], "arguments": arguments}},
            len(tokens.encoding(ENCODING).encode_ordinary(arguments)))


def _tool_usage(body: dict[str, Any], output: int) -> dict[str, int]:
    input_tokens = tokens.count_messages(body.get("messages") or [], ENCODING, tools=body.get("tools"))
    return {"prompt_tokens": input_tokens, "completion_tokens": output, "total_tokens": input_tokens + output}


def _tool_completion(body: dict[str, Any], model: str, call: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    tool, output = _tool_message(call)
    return {
        "id": "chatcmpl-mock" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [tool],
                                             "refusal": None}, "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": _tool_usage(body, output), "system_fingerprint": "fp_mock",
    }


async def _tool_chunks(
    body: dict[str, Any], model: str, call: tuple[str, dict[str, Any]]
) -> AsyncGenerator[Event, None]:
    tool, output = _tool_message(call)
    base = {"id": "chatcmpl-mock" + uuid.uuid4().hex[:20], "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_mock"}
    arguments = tool["function"]["arguments"]
    first = {**tool, "index": 0, "function": {"name": call[0], "arguments": ""}}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [first]},
                                "logprobs": None, "finish_reason": None}]}
    for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
        await asyncio.sleep(0)
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
        yield {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]}
    yield {**base, "choices": [], "usage": _tool_usage(body, output)}
