"""Account operations shared by the operator CLI and the platform routes: users, keys, money.

Every value that reaches a user or a key passes the checks here first, whichever door it came in
by (a platform route, the CLI): amounts, times and limits must fit what both stores hold and what
the views can print, so a request that is refused writes nothing and one that is accepted can
always be read back.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from .admission.keys import hash_key, mask, new_key, new_key_id
from .store.base import TIERS, Key, Store, User

DAY = 86_400.0


class AccountError(ValueError):
    """A refused account operation, with the field it concerns."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# One amount of money (a balance, a top-up, a spending cap): at most a billion of the currency, so
# sums of many stay far inside SQLite's and DynamoDB's 64-bit integers.
MAX_AMOUNT = 10**15  # micros
# Times from the epoch up to the last second of the year 9999, which every ISO-8601 view can print.
LATEST_TIME = 253_402_300_799.0
MAX_RPM = 1_000_000_000
MAX_REMARK = 1024
MAX_MEMBERSHIP_DAYS = 36_500


def check_amount(micros: int, param: str, *, positive: bool = False) -> int:
    """An amount of money in micros: not negative (not zero when `positive`), at most MAX_AMOUNT."""
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise AccountError(f"Invalid type for '{param}': expected a decimal amount.", param)
    if micros < 0 or (positive and micros == 0):
        raise AccountError(
            f"Invalid value for '{param}': must be {'greater than zero' if positive else 'zero or more'}.", param
        )
    if micros > MAX_AMOUNT:
        raise AccountError(f"Invalid value for '{param}': at most {MAX_AMOUNT // 1_000_000} in one amount.", param)
    return micros


def check_time(ts: float, param: str) -> float:
    """A point in time as epoch seconds, between 1970 and the end of the year 9999."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise AccountError(f"Invalid type for '{param}': expected an ISO-8601 time.", param)
    if not 0 <= ts <= LATEST_TIME:
        raise AccountError(
            f"Invalid value for '{param}': expected a time between 1970-01-01 and 9999-12-31.", param
        )
    return float(ts)


def check_rpm(rpm: int, param: str = "rpm") -> int:
    if isinstance(rpm, bool) or not isinstance(rpm, int):
        raise AccountError(f"Invalid type for '{param}': expected an integer.", param)
    if not 1 <= rpm <= MAX_RPM:
        raise AccountError(f"Invalid value for '{param}': expected an integer from 1 to {MAX_RPM}.", param)
    return rpm


def check_remark(remark: str, param: str = "remark") -> str:
    if not isinstance(remark, str):
        raise AccountError(f"Invalid type for '{param}': expected a string.", param)
    if len(remark) > MAX_REMARK:
        raise AccountError(f"Invalid value for '{param}': at most {MAX_REMARK} characters.", param)
    return remark


def check_membership_days(days: float | None, param: str = "membership_days") -> float | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days):
        raise AccountError(f"Invalid type for '{param}': expected a number of days.", param)
    if not -MAX_MEMBERSHIP_DAYS <= days <= MAX_MEMBERSHIP_DAYS:  # negative: a membership that has lapsed
        raise AccountError(
            f"Invalid value for '{param}': expected -{MAX_MEMBERSHIP_DAYS} to {MAX_MEMBERSHIP_DAYS} days.", param
        )
    return float(days)


def check_key_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The settable fields of a key, each checked; None clears the nullable ones."""
    checks: dict[str, Callable[[Any, str], Any]] = {
        "remark": check_remark,
        "permissions": lambda v, p: parse_permissions(v),
        "rpm": check_rpm,
        "max_fee": check_amount,
        "expired_at": check_time,
        "is_disabled": _check_bool,
    }
    out: dict[str, Any] = {}
    for name, value in fields.items():
        check = checks.get(name)
        if check is None:
            raise AccountError(f"Unknown key field '{name}'.", name)
        out[name] = value if value is None and name in ("rpm", "max_fee", "expired_at") else check(value, name)
    return out


def _check_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise AccountError(f"Invalid type for '{param}': expected a boolean.", param)
    return value


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise AccountError(f"Unknown tier '{tier}': use one of {', '.join(TIERS)}.", "tier")
    return tier


def create_user(
    store: Store, user_id: str, *, tier: str = "regular", balance: int = 0, membership_days: float | None = None
) -> User:
    check_tier(tier)
    check_amount(balance, "balance")
    membership_days = check_membership_days(membership_days)
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
    checked = check_key_fields(
        {"remark": remark, "permissions": permissions, "rpm": rpm, "max_fee": max_fee, "expired_at": expired_at}
    )
    remark, permissions = checked["remark"], checked["permissions"]
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


def update_key(store: Store, key_id: str, **fields: Any) -> Key:
    """Change a key's settable fields, each checked before anything is written."""
    return store.update_key(key_id, **check_key_fields(fields))


def set_membership(store: Store, user_id: str, tier: str, membership_days: float | None) -> User:
    fields: dict[str, Any] = {"tier": check_tier(tier)}
    days = check_membership_days(membership_days)
    if days is not None:
        fields["membership_expire_at"] = time.time() + days * DAY
    return store.update_user(user_id, **fields)


def top_up(store: Store, user_id: str, micros: int) -> User:
    """Add money to a user's balance (a positive amount: taking money is `debit`)."""
    return store.add_balance(user_id, check_amount(micros, "amount", positive=True))


class InsufficientBalance(AccountError):
    pass


def debit(store: Store, user_id: str, micros: int, reason: str) -> User:
    """Take money from a user on purpose, recorded in the usage history with its reason.

    The amount is reserved atomically like a call's cost (never taking the balance below zero), then
    settled with a record of route `debit` whose `model` names the reason.
    """
    from .store.base import UsageRecord

    check_amount(micros, "amount", positive=True)
    reason = (reason or "").strip()
    if not reason:
        raise AccountError("A debit needs a reason (--reason).", "reason")
    check_remark(reason, "reason")
    admitted = store.admit(user_id, None, [], micros, time.time())
    if not admitted.ok:
        if store.get_user(user_id) is None:
            from .store.base import NotFound

            raise NotFound(f"no user {user_id}")  # not "does not cover": there is nothing to cover
        raise InsufficientBalance(f"The balance of '{user_id}' does not cover a debit of this amount.", "amount")
    now = time.time()
    store.settle(UsageRecord(
        request_id="debit_" + uuid.uuid4().hex, user_id=user_id, key_id="operator", model=reason, created_at=now,
        route="debit", cost=micros, reserved=micros,
    ))
    user = store.get_user(user_id)
    assert user is not None
    return user


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
            value = text.split(",")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise AccountError("Invalid type for 'permissions': expected an array of model names.", "permissions")
    names = [p.strip() for p in value if p.strip()]
    if len(names) > MAX_PERMISSIONS or any(len(p) > MAX_MODEL_NAME for p in names):
        raise AccountError(
            f"Invalid value for 'permissions': at most {MAX_PERMISSIONS} names of {MAX_MODEL_NAME} characters.",
            "permissions",
        )
    return names


MAX_PERMISSIONS = 1000
MAX_MODEL_NAME = 256


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
