"""The legacy forms, expressed through the two modern ones so that no answer is mapped twice.

- `/v1/complete` (Anthropic text completions): the `\\n\\nHuman:` / `\\n\\nAssistant:` prompt becomes
  Messages turns; the Messages answer or events become `completion` objects.
- `/v1/completions` (OpenAI legacy) for a chat-only upstream: the prompt becomes one user message; the
  chat answer or chunks become `text_completion` objects.
- serialized models (`claude-2-web`): every message joined, in order, into one user message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from . import text_of
from .chat_claude import OPENING_TURN

__all__ = [
    "prompt_to_messages",
    "complete_to_messages",
    "message_to_completion",
    "CompletionEvents",
    "completion_to_chat",
    "chat_to_text_completion",
    "TextCompletionChunks",
    "serialize_turns",
    "serialized_chat",
    "serialized_messages",
]

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_LABELS = {"system": "System", "developer": "System", "user": "Human", "assistant": "Assistant"}


# --------------------------------------------------------------------------------------------------
# /v1/complete


def prompt_to_messages(prompt: str) -> tuple[str, list[dict[str, Any]]]:
    """System text (whatever precedes the first turn) and the alternating turns of a legacy prompt.

    The trailing empty `Assistant:` turn is the cue for the answer and is dropped; a non-empty last
    Assistant turn stays, as a prefill the answer continues.
    """
    pieces = _TURN.split(prompt)
    head = pieces[0].strip()
    messages: list[dict[str, Any]] = []
    for speaker, text in zip(pieces[1::2], pieces[2::2], strict=False):
        role = "user" if speaker == "Human" else "assistant"
        text = text.strip()
        if not text:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + text
        else:
            messages.append({"role": role, "content": text})
    if not messages:
        return "", [{"role": "user", "content": head or OPENING_TURN}]
    if messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": OPENING_TURN})
    return head, messages


def complete_to_messages(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Messages request for a `/v1/complete` request."""
    system, messages = prompt_to_messages(body.get("prompt") or "")
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": body.get("max_tokens_to_sample")}
    if system:
        out["system"] = system
    for name in ("stop_sequences", "temperature", "top_p", "top_k", "metadata"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stream"):
        out["stream"] = True
    return out


# What the legacy API reports as `stop` when the model ended its own turn: the turn marker, which is
# the stop sequence built into every Text Completions model.
HUMAN_TURN = "\n\nHuman:"


def _completion_stop(stop_reason: str | None, sequence: Any) -> tuple[str, str | None]:
    """The legacy (`stop_reason`, `stop`): the output cap (no sequence), or a stop sequence — the
    one the client gave that matched, else the turn marker for a turn the model ended itself."""
    if stop_reason == "max_tokens":
        return "max_tokens", None
    return "stop_sequence", sequence if isinstance(sequence, str) and sequence else HUMAN_TURN


def message_to_completion(message: dict[str, Any], *, model: str) -> dict[str, Any]:
    text = "".join(b.get("text") or "" for b in message.get("content") or () if b.get("type") == "text")
    ident = str(message.get("id") or "")
    stop_reason, stop = _completion_stop(message.get("stop_reason"), message.get("stop_sequence"))
    return {
        "type": "completion",
        "id": "compl_" + ident.removeprefix("msg_"),
        "completion": text,
        "stop_reason": stop_reason,
        "stop": stop,
        "model": model,
        "log_id": ident,
    }


class CompletionEvents:
    """Messages stream events → the legacy `completion` events (and the pings, as they come)."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.id = ""

    def _event(self, text: str, stop_reason: str | None, stop: str | None = None) -> dict[str, Any]:
        return {"type": "completion", "id": "compl_" + self.id.removeprefix("msg_"), "completion": text,
                "stop_reason": stop_reason, "stop": stop, "model": self.model, "log_id": self.id}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            return [self._event(delta["text"], None)] if delta.get("type") == "text_delta" else []
        if kind == "message_start":
            self.id = str((event.get("message") or {}).get("id") or "")
            return []
        if kind == "message_delta":
            delta = event.get("delta") or {}
            if delta.get("stop_reason"):
                return [self._event("", *_completion_stop(delta["stop_reason"], delta.get("stop_sequence")))]
            return []
        if kind == "ping":
            return [{"type": "ping"}]
        return []

    def finish(self) -> list[dict[str, Any]]:
        return []


# --------------------------------------------------------------------------------------------------
# /v1/completions (OpenAI legacy) for a chat upstream

_COMPLETION_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "stream", "stream_options", "user")


def completion_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request for a legacy completions request: the prompt is the one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = "".join(str(p) for p in prompt)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": [{"role": "user", "content": str(prompt or "")}]}
    for name in _COMPLETION_FIELDS:
        if body.get(name) is not None:
            chat[name] = body[name]
    return chat


def chat_to_text_completion(completion: dict[str, Any]) -> dict[str, Any]:
    choice = (completion.get("choices") or [{}])[0]
    ident = str(completion.get("id") or "").removeprefix("chatcmpl-")
    return {
        "id": "cmpl-" + ident,
        "object": "text_completion",
        "created": completion.get("created") or int(time.time()),
        "model": completion.get("model"),
        "choices": [{
            "index": 0,
            "text": (choice.get("message") or {}).get("content") or "",
            "logprobs": None,
            "finish_reason": choice.get("finish_reason"),
        }],
        "usage": completion.get("usage"),
    }


class TextCompletionChunks:
    """chat.completion.chunk objects → legacy `text_completion` chunks."""

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choices: list[dict[str, Any]] = []
        out: dict[str, Any] = {
            "id": "cmpl-" + str(chunk.get("id") or "").removeprefix("chatcmpl-"),
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "choices": choices,
        }
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or ""
            finish = choice.get("finish_reason")
            if text or finish:
                choices.append({"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
        return [out] if choices or "usage" in out else []

    def finish(self) -> list[dict[str, Any]]:
        return []


# --------------------------------------------------------------------------------------------------
# serialized models (claude-2-web)


def serialize_turns(turns: Iterable[tuple[Any, Any]]) -> str:
    """`System: ...`, `Human: ...`, `Assistant: ...` blocks, in order, separated by blank lines."""
    return "\n\n".join(f"{_LABELS.get(role, 'Human')}: {text_of(content)}" for role, content in turns)


def _one_message(turns: list[tuple[Any, Any]]) -> Any:
    """A single message is sent unchanged; several are joined into one."""
    return turns[0][1] if len(turns) == 1 else serialize_turns(turns)


def serialized_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A chat request for a serialized model: only `model`, `messages` and `stream` are honoured."""
    turns = [(m.get("role"), m.get("content")) for m in body.get("messages") or () if isinstance(m, dict)]
    out: dict[str, Any] = {"model": body.get("model"), "messages": [{"role": "user", "content": _one_message(turns)}]}
    if body.get("stream"):
        out["stream"] = True
    return out


def serialized_messages(body: dict[str, Any], *, max_tokens: int) -> dict[str, Any]:
    """A Messages request for a serialized model: the system text is the first `System:` block."""
    turns: list[tuple[Any, Any]] = [("system", body["system"])] if body.get("system") else []
    turns += [(m.get("role"), m.get("content")) for m in body.get("messages") or () if isinstance(m, dict)]
    out: dict[str, Any] = {
        "model": body.get("model"),
        "messages": [{"role": "user", "content": _one_message(turns)}],
        "max_tokens": max_tokens,
    }
    if body.get("stream"):
        out["stream"] = True
    return out
