"""Translation between the OpenAI chat and the Anthropic Messages wire formats, and the legacy forms.

Pure functions and small stateful stream translators over plain dicts: no I/O, no settings, no
money. The relay composes them into plans (`llm_gateway.relay.translated`), so each mapping is
written once and tested here without any server.

- `chat_claude`: an OpenAI chat client served by Claude (request → Messages; answers and stream
  events → chat completions and chunks).
- `messages_openai`: an Anthropic Messages client served by an OpenAI-wire model (the reverse pair).
- `legacy`: `/v1/complete` prompts, legacy OpenAI completions, and the serialized `claude-2-web` mode.
"""

from __future__ import annotations

from typing import Any

import orjson


def text_of(content: Any) -> str:
    """The text of a message's content in either family: a string, or the text of its text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text"):
            texts.append(str(part.get("text") or ""))
    return "\n".join(texts) if len(texts) > 1 else (texts[0] if texts else "")


def json_text(value: Any) -> str:
    """Compact JSON, the form tool arguments travel in."""
    return orjson.dumps(value if value is not None else {}).decode()


def json_object(text: Any) -> dict[str, Any]:
    """Tool arguments as an object; arguments that are not a JSON object become an empty one."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
