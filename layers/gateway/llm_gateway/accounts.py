"""Account operations shared by the operator CLI and the platform routes: users, keys, money."""

from __future__ import annotations

import time
from typing import Any

from .admission.keys import hash_key, mask, new_key, new_key_id
from .store.base import TIERS, Key, Store, User

DAY = 86_400.0


class AccountError(ValueError):
    """A refused account operation, with the field it concerns."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise AccountError(f"Unknown tier '{tier}': use one of {', '.join(TIERS)}.", "tier")
    return tier


def create_user(
    store: Store, user_id: str, *, tier: str = "regular", balance: int = 0, membership_days: float | None = None
) -> User:
    check_tier(tier)
    now = time.time()
    expire = now + membership_days * DAY if membership_days is not None else None
    return store.create_user(
        User(user_id=user_id, tier=tier, balance=balance, membership_expire_at=expire, created_at=now)
    )


def issue_key(
    store: Store,
    user_id: str,
    *,
    permissions: list[str] | None = None,
    is_admin: bool = False,
    remark: str = "",
    rpm: int | None = None,
    max_fee: int | None = None,
    expired_at: float | None = None,
    max_keys: int | None = None,
) -> tuple[Key, str]:
    """Mint a key for `user_id`; returns the stored key and the full key (shown once, never stored)."""
    full = new_key()
    key = Key(
        key_id=new_key_id(),
        key_hash=hash_key(full),
        user_id=user_id,
        key_hint=mask(full),
        remark=remark,
        permissions=list(permissions or []),
        rpm=rpm,
        is_admin=is_admin,
        created_at=time.time(),
        expired_at=expired_at,
        max_fee=max_fee,
    )
    return store.create_key(key, max_keys=max_keys), full


class KeyNotFound(AccountError):
    """No key of this user matches: said the same way whether the key is another user's or none at all."""

    def __init__(self, param: str) -> None:
        super().__init__("API key not found.", param)


def own_key(store: Store, user_id: str, *, full_key: str | None = None, key_id: str | None = None) -> Key:
    """The key of `user_id` named by its full key (looked up by hash) or its `key_id`.

    Both given must name the same key. A key of another user raises exactly what a missing key
    raises, so a caller cannot learn whether someone else's key exists.
    """
    if full_key is not None:
        key, param = store.get_key_by_hash(hash_key(full_key)), "key"
    else:
        key, param = (store.get_key(key_id) if key_id is not None else None), "key_id"
    if key is None or key.user_id != user_id or (key_id is not None and key.key_id != key_id):
        raise KeyNotFound(param)
    return key


def parse_permissions(value: Any) -> list[str]:
    """A JSON array or a comma-separated list of model names (a trailing `*` matches a prefix)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                value = json.loads(text)
            except ValueError:
                raise AccountError("Invalid value for 'permissions': not a JSON array.", "permissions") from None
        else:
            return [p.strip() for p in text.split(",") if p.strip()]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise AccountError("Invalid type for 'permissions': expected an array of model names.", "permissions")
    return [p.strip() for p in value if p.strip()]


def bootstrap_admin(store: Store) -> str | None:
    """On a store with no users: the `admin` user (premium, balance 0) and an admin key, once."""
    if store.count_users() > 0:
        return None
    from .store.base import AlreadyExists

    try:
        create_user(store, "admin", tier="premium")
    except AlreadyExists:
        return None
    _, full = issue_key(store, "admin", is_admin=True, remark="bootstrap admin key")
    return full
