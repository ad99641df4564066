"""Settings read from the environment, once per process.

Plain `os.environ` lookups behind a cached dataclass: the settings are few and flat, and importing a
settings library would cost cold-start time on every Lambda function for no gain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_STORE_URL = "sqlite:///.gateway/gateway.db"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    store_url: str = DEFAULT_STORE_URL
    currency: str = "USD"
    max_body_bytes: int = 8 * 1024 * 1024
    upstream_timeout: float = 60.0
    # Seconds a non-streamed model call may wait on its upstream before the 200 is committed and
    # whitespace keeps the connection busy until the JSON body (relay/idle.py); 0 = never.
    idle_pad_seconds: float = 0.0
    cors_origins: tuple[str, ...] = ("*",)
    max_keys_per_user: int = 5000
    # How long a process may serve a key, user or catalog from memory. The contract allows 5 s.
    cache_ttl: float = 2.0
    log_level: str = "INFO"
    anthropic_version: str = "2023-06-01"
    # Upstream connection pool: "auto" (aiohttp's pool when installed, except on Lambda), "httpx", "aiohttp".
    http_transport: str = "auto"
    # Seconds of upstream silence after which a stream sends an SSE comment to keep connections open.
    sse_keepalive: float = 15.0
    # Days usage records are kept (0: forever): a TTL on DynamoDB, pruned by `serve` on SQLite.
    usage_retention_days: float = 0.0
    # On AWS, the SQS queue a settlement that could not be written goes to (else the store keeps it).
    settlement_queue_url: str | None = None
    # Channels (API.md 7): seconds a failed channel is skipped, per process; attempts per request.
    channel_cooldown: float = 30.0
    max_attempts: int = 3
    env: dict = field(default_factory=dict, repr=False, compare=False)

    def secret(self, name: str) -> str | None:
        """A provider credential or endpoint: never logged, never echoed to clients."""
        return self.env.get(name) or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    origins = os.environ.get("GATEWAY_CORS_ORIGINS", "*")
    return Settings(
        store_url=os.environ.get("GATEWAY_STORE_URL") or DEFAULT_STORE_URL,
        currency=os.environ.get("GATEWAY_CURRENCY") or "USD",
        max_body_bytes=_int("GATEWAY_MAX_BODY_BYTES", 8 * 1024 * 1024),
        upstream_timeout=_float("GATEWAY_UPSTREAM_TIMEOUT", 60.0),
        idle_pad_seconds=max(0.0, _float("GATEWAY_IDLE_PAD_SECONDS", 0.0)),
        cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()) or ("*",),
        max_keys_per_user=_int("GATEWAY_MAX_KEYS_PER_USER", 5000),
        cache_ttl=min(_float("GATEWAY_CACHE_TTL", 2.0), 5.0),
        log_level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO"),
        anthropic_version=os.environ.get("ANTHROPIC_VERSION") or "2023-06-01",
        http_transport=os.environ.get("GATEWAY_HTTP_TRANSPORT") or "auto",
        sse_keepalive=_float("GATEWAY_SSE_KEEPALIVE", 15.0),
        usage_retention_days=max(0.0, _float("GATEWAY_USAGE_RETENTION_DAYS", 0.0)),
        settlement_queue_url=os.environ.get("GATEWAY_SETTLEMENT_QUEUE_URL") or None,
        channel_cooldown=max(0.0, _float("GATEWAY_CHANNEL_COOLDOWN", 30.0)),
        max_attempts=max(1, _int("GATEWAY_MAX_ATTEMPTS", 3)),
        env=dict(os.environ),
    )


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
