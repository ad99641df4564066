"""Opaque cursors for the usage listing: keyset pagination shared by every adapter.

A cursor names the last record a page returned (its sort position, `created_at` then `request_id`)
and the listing it was made for (user and filters). The next page starts strictly after that
position, newest first, so records settled meanwhile (always newer) neither shift nor repeat a walk,
unlike an offset. Binding the filters in makes a cursor reused with other filters a ValueError
instead of a silently wrong page. The text is base64url JSON: opaque to callers, URL-safe, and
versioned so its layout can change.

Adapters build a `UsageQuery` from `list_usage`'s arguments (which checks them and decodes the
cursor), fetch up to `want` records past `start_after` and `offset`, and hand them to `page`, which
cuts the page and makes `next_cursor`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import cast

from .base import UsagePage, UsageRecord

__all__ = ["UsageQuery", "Totals", "encode_cursor"]

_VERSION = 1
_MAX_CURSOR = 4096  # far above any real cursor; refuses absurd input before decoding it
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")

# (total, cost, input tokens incl. cache, output tokens) over every record the filters match
Totals = tuple[int, int, int, int]


@dataclass(frozen=True)
class UsageQuery:
    """One `list_usage` call, checked: its filters, its slice and where a cursor says to start."""

    user_id: str
    since: float | None = None
    until: float | None = None
    model: str | None = None
    offset: int = 0
    limit: int = 20
    cursor: str | None = None
    start_after: tuple[float, str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", self.model or None)  # "" means no filter, as it always did
        if self.offset < 0 or self.limit < 0:
            raise ValueError("offset and limit must not be negative")
        if self.cursor is None:
            return
        if self.offset:
            raise ValueError("a cursor continues where its page ended: offset must be 0")
        object.__setattr__(self, "start_after", _decode(self.cursor, self._scope()))

    @property
    def want(self) -> int:
        """Records to fetch past `start_after` and `offset`: the page, and one to tell if more follow."""
        return self.limit + 1

    def page(self, fetched: list[UsageRecord], totals: Totals | None) -> UsagePage:
        """The page from up to `want` records fetched newest first past `start_after` and `offset`,
        with totals over the whole filtered range, or None when they were skipped."""
        records = fetched[:self.limit]
        more = len(fetched) > self.limit
        next_cursor = encode_cursor(records[-1], self._scope()) if more and records else None
        if totals is None:
            return UsagePage(None, records, None, None, None, None, next_cursor)
        total, cost, tin, tout = totals
        return UsagePage(total, records, cost, tin, tout, total, next_cursor)

    def _scope(self) -> list[object]:
        return [self.user_id, self.since, self.until, self.model]


def encode_cursor(record: UsageRecord, scope: list[object]) -> str:
    """The cursor continuing after `record` in the listing `scope` (user, since, until, model)."""
    raw = json.dumps([_VERSION, record.created_at, record.request_id, *scope], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def _decode(cursor: str, scope: list[object]) -> tuple[float, str]:
    """The (created_at, request_id) a cursor continues after; ValueError for anything else."""
    if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR or not _ALPHABET.fullmatch(cursor):
        raise ValueError("not a cursor this listing made")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor this listing made") from None
    if not (isinstance(parts, list) and len(parts) == 7 and parts[0] == _VERSION):
        raise ValueError("not a cursor this listing made")
    created_at, request_id = parts[1], parts[2]
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not isinstance(request_id, str):
        raise ValueError("not a cursor this listing made")
    if parts[3:] != scope:
        raise ValueError("this cursor was made for another user or other filters")
    since, until = cast("float | None", scope[1]), cast("float | None", scope[2])
    # The record it names matched these filters; a position outside them is forged.
    if (since is not None and created_at < since) or (until is not None and created_at >= until):
        raise ValueError("not a cursor this listing made")
    return float(created_at), request_id
