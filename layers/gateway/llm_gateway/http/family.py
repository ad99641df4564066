"""Which error family a path belongs to (API.md section 1)."""

from __future__ import annotations

from ..errors import Family

_ANTHROPIC = ("/v1/messages", "/v1/complete")


def family_for_path(path: str) -> Family:
    if path.startswith("/api/"):
        return "platform"
    for prefix in _ANTHROPIC:
        if path == prefix or path.startswith(prefix + "/"):
            return "anthropic"
    return "openai"
