"""Persistent state behind one protocol; `open_store` picks the adapter from GATEWAY_STORE_URL."""

from __future__ import annotations

from .base import (
    TIERS,
    Admission,
    AlreadyExists,
    Counter,
    Key,
    KeyCapReached,
    NotFound,
    Store,
    StoreError,
    UsagePage,
    UsageRecord,
    User,
)

__all__ = [
    "TIERS", "Admission", "AlreadyExists", "Counter", "Key", "KeyCapReached", "NotFound", "Store",
    "StoreError", "UsagePage", "UsageRecord", "User", "open_store",
]


def open_store(url: str) -> Store:
    """`sqlite:///path.db` or `dynamodb://<table-prefix>`; the adapter is imported only when used."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith("dynamodb://"):
        from .dynamodb import DynamoDBStore

        return DynamoDBStore(url[len("dynamodb://"):])
    raise ValueError(f"unsupported GATEWAY_STORE_URL {url!r}: use sqlite:///path.db or dynamodb://prefix")
