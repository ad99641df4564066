"""ISO-8601 UTC at the edges, epoch seconds inside."""

from __future__ import annotations

from datetime import UTC, datetime

LATEST = "9999-12-31T23:59:59Z"


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC. A time past what ISO-8601 can print (only a store written
    before the range checks could hold one) reads as the latest printable time, never as a crash."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return LATEST if ts > 0 else "1970-01-01T00:00:00Z"


def parse_iso(value: str) -> float:
    """An ISO-8601 date or datetime (naive means UTC) -> epoch seconds; ValueError if unreadable."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
