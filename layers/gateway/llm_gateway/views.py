"""The public JSON shapes of users, keys and usage records (API.md sections 2 and 5), in one place.

The CLI and the platform routes both print these, so an operator and an API client see the same
fields with the same formats: ISO-8601 UTC times and money as decimal strings.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

from .billing.cost import scaled_price
from .catalog import ModelSpec
from .money import format_micros
from .store.base import Key, UsageGroup, UsagePage, UsageRecord, UsageSummary, User
from .times import iso


def key_view(key: Key, full_key: str | None = None) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "key": full_key or key.key_hint,
        "user_id": key.user_id,
        "remark": key.remark,
        "permissions": list(key.permissions),
        "rpm": key.rpm,
        "is_admin": key.is_admin,
        "is_disabled": key.is_disabled,
        "created_at": iso(key.created_at),
        "used_at": iso(key.used_at),
        "expired_at": iso(key.expired_at),
        "used_times": key.used_times,
        "used_fee": format_micros(key.used_fee),
        "max_fee": None if key.max_fee is None else format_micros(key.max_fee),
    }


def user_view(user: User, currency: str = "USD") -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "tier": user.tier,
        "effective_tier": user.effective_tier(time.time()),
        "balance": format_micros(user.balance),
        "currency": currency,
        "membership_expire_date": iso(user.membership_expire_at),
        "created_at": iso(user.created_at),
        "key_count": user.key_count,
    }


def usage_view(record: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "user_id": record.user_id,
        "key_id": record.key_id,
        "model": record.model,
        "route": record.route,
        "created_at": iso(record.created_at),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cache_read_tokens": record.cache_read_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "cost": format_micros(record.cost),
        "latency_ms": record.latency_ms,
        "status": record.status,
        **({"units": record.units} if record.units else {}),  # images, characters, audio...: only when used
    }


def usage_page_view(page: UsagePage) -> dict[str, Any]:
    """One page of usage records, newest first, with the sums over every record the filter matched
    and the cursor that continues after it (null on the last page)."""
    return {
        "total": page.total,
        "records": [usage_view(r) for r in page.records],
        "sum": {
            "cost": None if page.cost is None else format_micros(page.cost),
            "input_tokens": page.input_tokens,
            "output_tokens": page.output_tokens,
            "requests": page.requests,
        },
        "next_cursor": page.next_cursor,
    }


def usage_summary_view(summary: UsageSummary) -> dict[str, Any]:
    """Usage summed per group (a UTC day or a model), in ascending order of key, and over them all."""

    def sums(group: UsageGroup) -> dict[str, Any]:
        return {"requests": group.requests, "input_tokens": group.input_tokens,
                "output_tokens": group.output_tokens, "cost": format_micros(group.cost)}

    return {"groups": [{"key": g.key, **sums(g)} for g in summary.groups], "sum": sums(summary.total)}


def balance_view(user: User, currency: str) -> dict[str, Any]:
    # No daily free credit exists; OhMyGPT clients still read the field.
    return {"balance": format_micros(user.balance), "free_balance": "0", "currency": currency}


def membership_view(user: User, now: float | None = None) -> dict[str, Any]:
    return {
        "membership_expire_date": iso(user.membership_expire_at),
        "tier": user.tier,
        "effective_tier": user.effective_tier(time.time() if now is None else now),
    }


def rate_view(spec: ModelSpec, multiplier: Fraction) -> dict[str, Any]:
    """A model's prices as one tier pays them (API.md 5.1 model-rates): the text token prices per 1M
    tokens, always; audio tokens per 1M, `per_request` (a price, or {pool: price}), `per_image`
    ({"SIZE/QUALITY": price}) and `per_1m_chars` only where the model has such a price, else null."""
    p = spec.prices

    def price(micros: int) -> str:
        return format_micros(scaled_price(micros, multiplier))

    def priced(micros: int) -> str | None:
        return price(micros) if micros else None

    per_request: str | dict[str, str] | None = (
        {pool: price(m) for pool, m in p.per_request.items()} if isinstance(p.per_request, dict)
        else priced(p.per_request)
    )
    return {
        "kind": spec.kind,
        "provider": spec.provider,
        **{f: price(getattr(p, f)) for f in ("input", "output", "cache_read", "cache_write")},
        "audio_input": priced(p.audio_input),
        "audio_output": priced(p.audio_output),
        "per_request": per_request or None,
        "per_image": {k: price(m) for k, m in p.per_image.items()} or None,
        "per_1m_chars": priced(p.per_1m_chars),
    }
