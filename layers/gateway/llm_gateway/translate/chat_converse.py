"""OpenAI Chat Completions ⇄ Bedrock Converse: requests, answers and stream events (pure functions).

For the Bedrock models that are not Claude (Claude goes through InvokeModel with Anthropic's own
body): text messages, the system prompt, and the sampling settings Converse has. Usage comes from
Converse's `usage` (the stream's final `metadata` event), as OpenAI's usage object.
"""

from __future__ import annotations

import time
from typing import Any

# Converse's stop reasons as OpenAI finish reasons.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "content_filtered": "content_filter", "guardrail_intervened": "content_filter"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def chat_to_converse(body: dict[str, Any]) -> dict[str, Any]:
    """A Converse request from an OpenAI chat body (the model goes in the URL, not the body)."""
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        text = _text(message.get("content"))
        if role in ("system", "developer"):
            if text:
                system.append({"text": text})
            continue
        role = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == role:  # Converse wants roles to alternate
            messages[-1]["content"].append({"text": text})
        else:
            messages.append({"role": role, "content": [{"text": text}]})
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxTokens"] = int(max_tokens)
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    if config:
        out["inferenceConfig"] = config
    return out


def converse_usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def converse_to_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion from a Converse answer."""
    message = ((data.get("output") or {}).get("message") or {})
    text = "".join(str(c.get("text") or "") for c in message.get("content") or () if isinstance(c, dict))
    out: dict[str, Any] = {
        "id": "chatcmpl-bedrock", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": _FINISH.get(str(data.get("stopReason")), "stop")}],
    }
    usage = converse_usage(data.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def converse_event_to_chunk(kind: str, event: dict[str, Any], model: str, created: int) -> dict[str, Any] | None:
    """An OpenAI chat.completion.chunk from one ConverseStream event (None: nothing to say)."""
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": "chatcmpl-bedrock", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}

    if kind == "messageStart":
        return chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    if kind == "contentBlockDelta":
        text = (event.get("delta") or {}).get("text")
        if text:
            return chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        return None
    if kind == "messageStop":
        return chunk([{"index": 0, "delta": {}, "finish_reason": _FINISH.get(str(event.get("stopReason")), "stop")}])
    if kind == "metadata":
        return chunk([], usage=converse_usage(event.get("usage")))
    return None
