"""Token usage as the upstreams report it, in one shape for billing.

`input_tokens` never includes cached tokens: OpenAI's `prompt_tokens` does include its cached
tokens, so they are moved to `cache_read_tokens` here and billed once, at the cached price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def from_openai(usage: dict[str, Any] | None) -> Usage | None:
    """Usage from an OpenAI chat/completions `usage` object (None when absent)."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = min(prompt, _int(details.get("cached_tokens")) if isinstance(details, dict) else 0)
    output = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    return Usage(input_tokens=prompt - cached, output_tokens=output, cache_read_tokens=cached)


def from_anthropic(usage: dict[str, Any] | None, into: Usage | None = None) -> Usage | None:
    """Usage from an Anthropic `usage` object; with `into`, fields present update it (stream deltas)."""
    if not isinstance(usage, dict):
        return into
    u = into or Usage()
    if usage.get("input_tokens") is not None:
        u.input_tokens = _int(usage["input_tokens"])
    if usage.get("output_tokens") is not None:
        u.output_tokens = _int(usage["output_tokens"])
    if usage.get("cache_read_input_tokens") is not None:
        u.cache_read_tokens = _int(usage["cache_read_input_tokens"])
    if usage.get("cache_creation_input_tokens") is not None:
        u.cache_write_tokens = _int(usage["cache_creation_input_tokens"])
    return u
