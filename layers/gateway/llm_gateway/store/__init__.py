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


def open_store(url: str, usage_retention_days: float = 0) -> Store:
    """`sqlite:///path.db` or `dynamodb://<table-prefix>`; the adapter is imported only when used.
    With `usage_retention_days`, DynamoDB usage records carry a TTL that long (SQLite's are pruned
    by the server's housekeeping, billing.retry)."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith("dynamodb://"):
        from .dynamodb import DynamoDBStore

        return DynamoDBStore(url[len("dynamodb://"):], usage_retention_s=usage_retention_days * 86_400)
    raise ValueError(f"unsupported GATEWAY_STORE_URL {url!r}: use sqlite:///path.db or dynamodb://prefix")
