"""Anthropic's Messages API over httpx.

The operator's `ANTHROPIC_API_KEY` goes in `x-api-key` (never the client's key); the client's
`anthropic-version` and `anthropic-beta` are passed on when it sent them (API.md 3.2), else the
gateway's `ANTHROPIC_VERSION`. `ANTHROPIC_BASE_URL` has no `/v1`, as in Anthropic's own SDK, so
the operations' paths carry it ("/v1/messages", "/v1/messages/count_tokens").
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import CLIENT_KINDS, Kind, UpstreamError
from .base import Event, HTTPProvider, missing

# An `error` event's type → how the caller sees it; anything else is the upstream failing.
_STREAM_ERRORS: dict[str, Kind] = {
    "rate_limit_error": "upstream_rate_limited",
    "invalid_request_error": "invalid_request",
    "request_too_large": "request_too_large",
}


class AnthropicProvider(HTTPProvider):
    name = "anthropic"
    channel_settings = {"base_url": "ANTHROPIC_BASE_URL", "api_key_env": "ANTHROPIC_API_KEY"}
    paths = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("ANTHROPIC_API_KEY")
        self.base_url = (settings.secret("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")
        self.version = settings.anthropic_version

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("ANTHROPIC_API_KEY", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        extra = extra or {}
        out = {
            "x-api-key": self.api_key or "",
            "anthropic-version": extra.get("anthropic-version") or self.version,
            "content-type": "application/json",
        }
        if extra.get("anthropic-beta"):
            out["anthropic-beta"] = extra["anthropic-beta"]
        return out

    def check_event(self, event: Event) -> None:
        """Anthropic reports a failure inside a stream as an `error` event (e.g. `overloaded_error`)."""
        if event.get("type") != "error":
            return
        found = event.get("error")
        err: dict[str, Any] = found if isinstance(found, dict) else {}
        kind: Kind = _STREAM_ERRORS.get(str(err.get("type")), "upstream_error")
        message = err.get("message") or err.get("type") or "unknown error"
        headers = {"Retry-After": "1"} if kind == "upstream_rate_limited" else None
        raise UpstreamError(kind, f"The {self.name} provider failed mid-stream: {message}", headers=headers,
                            retryable=kind not in CLIENT_KINDS)
