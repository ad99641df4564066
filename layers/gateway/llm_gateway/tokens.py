"""Token counting with tiktoken, from encoding files shipped with the gateway (never downloaded).

Counting is the fallback for billing (upstream usage is the truth) and the basis of the
input-limit check and of the funds reservation, so it follows one documented rule (API.md section 4):
the text of every message, tool definitions as JSON, 3 tokens of framing per message and a flat 85
tokens per image.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from . import glibc

TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 85

_lock = threading.Lock()
_encodings: dict[str, Any] = {}


def _bundled_dir() -> str | None:
    here = Path(__file__).resolve().parent
    for candidate in (here / "tokenizers", here.parent.parent / "tiktoken", Path("/opt/tiktoken")):
        if candidate.is_dir() and any(candidate.iterdir()):
            return str(candidate)
    return None


def encoding(name: str):
    """The tiktoken encoding `name`, loaded once per process from the shipped files."""
    enc = _encodings.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            if not os.environ.get("TIKTOKEN_CACHE_DIR"):
                bundled = _bundled_dir()
                if bundled:
                    os.environ["TIKTOKEN_CACHE_DIR"] = bundled
            import tiktoken

            enc = tiktoken.get_encoding(name)
            # The Encoding keeps a Python dict of all its ranks (~30 MB for o200k_base) besides the
            # Rust tokenizer built from it; counting and decoding use only the Rust side.
            if hasattr(enc, "_mergeable_ranks"):
                enc._mergeable_ranks = None  # type: ignore[assignment]
            _encodings[name] = enc
            _give_back_freed_memory()
    return enc


def _give_back_freed_memory() -> None:
    """Loading an encoding builds (and frees) tens of MB of Python objects; glibc's allocator keeps
    the freed pages unless asked to return them (measured: 27 MB of RSS kept after loading
    cl100k_base). Not on Lambda, where the first request would wait for it and memory is billed as
    configured, not as used; elsewhere without glibc this does nothing."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        glibc.call("malloc_trim", 0)


def preload(*names: str) -> None:
    """Load encodings ahead of the first request (a long-running server calls this at start)."""
    for name in names:
        encoding(name)


def count_text(text: str, encoding_name: str) -> int:
    if not text:
        return 0
    return len(encoding(encoding_name).encode_ordinary(text))


def _content_parts(content: Any, texts: list[str]) -> int:
    """Collect the text of one message's content into `texts`; return the number of images."""
    if content is None:
        return 0
    if isinstance(content, str):
        texts.append(content)
        return 0
    images = 0
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("image_url", "image", "input_image"):
                images += 1
            elif kind in ("text", "input_text"):
                texts.append(str(part.get("text") or ""))
            elif kind in ("tool_use",):
                texts.append(str(part.get("name") or ""))
                texts.append(orjson.dumps(part.get("input") or {}).decode())
            elif kind in ("tool_result",):
                images += _content_parts(part.get("content"), texts)
            elif kind in ("thinking",):
                texts.append(str(part.get("thinking") or ""))
            elif "text" in part:
                texts.append(str(part.get("text") or ""))
    return images


def count_messages(
    messages: Iterable[dict[str, Any]],
    encoding_name: str,
    *,
    system: Any = None,
    tools: Any = None,
) -> int:
    """Input tokens of a chat (OpenAI) or messages (Anthropic) request, by the documented rule."""
    texts: list[str] = []
    images = 0
    framing = 0
    if system:
        framing += TOKENS_PER_MESSAGE
        images += _content_parts(system, texts)
    for message in messages:
        if not isinstance(message, dict):
            continue
        framing += TOKENS_PER_MESSAGE
        images += _content_parts(message.get("content"), texts)
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                texts.append(str(fn.get("name") or ""))
                texts.append(str(fn.get("arguments") or ""))
    if tools:
        texts.append(orjson.dumps(tools).decode())
    enc = encoding(encoding_name)
    tokens = sum(len(enc.encode_ordinary(t)) for t in texts if t)
    return tokens + framing + images * TOKENS_PER_IMAGE
