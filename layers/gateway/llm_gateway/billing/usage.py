"""What one call used, in every unit the catalog prices, in one shape for billing.

Tokens as the upstreams report them: `input_tokens` never includes cached tokens (OpenAI's
`prompt_tokens` does include its cached tokens, so they are moved to `cache_read_tokens` here and
billed once, at the cached price), nor audio tokens when a caller reports those apart. Beside tokens:
images by "SIZE/QUALITY", characters of spoken text, and calls (`requests`, priced by the model's
`per_request`, per `pool` where the model prices pools).

`requests` is 1 by default: a settled call is one call, so a model's per-request price is charged
once per call exactly as before units existed. A usage that is not a call of its own (a later
`response.done` of a realtime session admitted once at connect) says `requests=0`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    images: dict[str, int] = field(default_factory=dict)  # "SIZE/QUALITY" -> images produced
    characters: int = 0  # characters of text spoken (speech models)
    requests: int = 1  # calls, each priced by the model's per_request
    pool: str | None = None  # which per-request price of a model that prices pools ("FAST", "NORMAL")

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def metered(self) -> bool:
        """Whether anything besides the call itself was used (tokens, audio, images, characters)."""
        return bool(
            self.total_input or self.output_tokens or self.audio_input_tokens or self.audio_output_tokens
            or self.characters or any(self.images.values())
        )

    def units(self) -> dict[str, Any]:
        """The non-token units, for the usage record: only those used (or, for `requests`, other
        than one call), so a plain token call has none."""
        out: dict[str, Any] = {}
        for name in ("audio_input_tokens", "audio_output_tokens", "characters"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        images = {k: n for k, n in self.images.items() if n}
        if images:
            out["images"] = images
        if self.requests != 1:
            out["requests"] = self.requests
        if self.pool is not None:
            out["pool"] = self.pool
        return out


def image_key(size: str, quality: str) -> str:
    """The key of an image in `Usage.images` and in a model's `per_image` prices."""
    return f"{size}/{quality}"


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
