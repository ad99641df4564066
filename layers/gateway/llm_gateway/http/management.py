"""The platform's management family (API.md 5.1, OhMyGPT-compatible): keys, balance, membership,
usage and model rates.

Answers are the platform envelope `{statusCode, message, data}`; refusals are GatewayErrors that the
app renders in the same envelope. The key routes need an admin key, checked before the body is
read, and only ever touch the admin's own user: a key of another user gets exactly the 404 of a key
that does not exist, so nothing about other tenants can be learnt. Per user, key changes share one
small per-second budget and listing another, so the store is not scraped or hammered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from .. import accounts
from ..admission.keys import Caller, permits
from ..errors import GatewayError, invalid
from ..runtime import Runtime
from ..store.base import USAGE_GROUPS, Key, KeyCapReached, NotFound, User
from ..views import balance_view, key_view, membership_view, rate_view, usage_page_view, usage_summary_view
from . import apidocs, console
from .body import field, loose_bool, loose_int, loose_money, loose_time, parse_body
from .deps import caller, runtime
from .responses import platform_ok

router = APIRouter()

ADMIN = "/api/v1/user/admin"
# Per user, one-second windows (API.md 5.1).
WRITES_PER_SECOND = 10  # create, update and delete together
LISTS_PER_SECOND = 1
MAX_PAGE_SIZE = 100


async def admin_caller(who: Caller = Depends(caller)) -> Caller:
    """403 for a key that is not an admin key, before its body is looked at."""
    if not who.key.is_admin:
        raise GatewayError("permission", "This route needs an admin API key of the user.")
    return who


@router.post(f"{ADMIN}/new-api-token")
@router.post(f"{ADMIN}/create-api-token")
async def create_api_token(
    request: Request, who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)
) -> Response:
    changes = key_changes(await parse_body(request, rt.settings.max_body_bytes), update=False)
    await _limit(rt, who, "writes", WRITES_PER_SECOND)
    cap = rt.settings.max_keys_per_user
    try:
        key, full = await rt.blocking(accounts.issue_key, rt.store, who.user_id, max_keys=cap, **changes)
    except KeyCapReached:
        raise invalid(f"This user already holds the maximum of {cap} API keys: delete one first.") from None
    rt.keys.forget(key.key_hash)  # were it ever presented here, it is no longer unknown
    return platform_ok(key_view(key, full))


@router.post(f"{ADMIN}/update-api-token")
async def update_api_token(
    request: Request, who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)
) -> Response:
    body = await parse_body(request, rt.settings.max_body_bytes)
    changes = key_changes(body, update=True)
    reference = key_reference(body)
    await _limit(rt, who, "writes", WRITES_PER_SECOND)
    key = await _own_key(rt, who, reference)
    if changes:
        try:
            key = await rt.blocking(accounts.update_key, rt.store, key.key_id, **changes)
        except NotFound:  # deleted meanwhile
            raise _not_found(accounts.KeyNotFound("key_id")) from None
    rt.keys.forget(key.key_hash)  # immediate in this process; other processes within the cache TTL
    return platform_ok(key_view(key))


@router.post(f"{ADMIN}/get-api-tokens")
async def get_api_tokens(who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)) -> Response:
    await _limit(rt, who, "lists", LISTS_PER_SECOND)
    return platform_ok([key_view(k) for k in await rt.blocking(rt.store.list_keys, who.user_id)])


@router.post(f"{ADMIN}/del-api-token")
@router.post(f"{ADMIN}/delete-api-token")
async def delete_api_token(
    request: Request, who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)
) -> Response:
    reference = key_reference(only_fields(await parse_body(request, rt.settings.max_body_bytes), DELETE_FIELDS))
    await _limit(rt, who, "writes", WRITES_PER_SECOND)
    key = await _own_key(rt, who, reference)
    try:
        await rt.blocking(rt.store.delete_key, key.key_id)
    except NotFound:  # deleted meanwhile
        raise _not_found(accounts.KeyNotFound("key_id")) from None
    rt.keys.forget(key.key_hash)
    return platform_ok(None)


@router.post(f"{ADMIN}/get-membership-expire-date")
async def get_membership_expire_date(
    who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)
) -> Response:
    return platform_ok(membership_view(await _fresh_user(rt, who)))


@router.post(f"{ADMIN}/balance")
async def balance(who: Caller = Depends(admin_caller), rt: Runtime = Depends(runtime)) -> Response:
    return platform_ok(balance_view(await _fresh_user(rt, who), rt.settings.currency))


@router.get("/api/v1/user/usage")
async def usage(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """The user's usage records, newest first; any key of the user may read them."""
    query: dict[str, Any] = dict(request.query_params)
    since, until, model = usage_filters(query)
    cursor = query.get("cursor") or None  # a previous answer's next_cursor; it replaces `page`
    page = 1 if cursor else loose_int(query, "page", minimum=1, maximum=1_000_000) or 1
    size = loose_int(query, "pageSize", minimum=1, maximum=MAX_PAGE_SIZE) or 20
    try:
        found = await rt.blocking(
            rt.store.list_usage, who.user_id, since=since, until=until, model=model, offset=(page - 1) * size,
            limit=size, cursor=cursor,
        )
    except ValueError:  # garbled, or made for other filters (or another user)
        raise invalid("Invalid value for 'cursor': pass the next_cursor of an answer with the same filters.",
                      "cursor") from None
    return platform_ok(usage_page_view(found))


@router.get("/api/v1/user/usage/summary")
async def usage_summary(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """The user's usage summed per UTC day (default) or per model: what a chart of spend over time
    needs, without the records; any key of the user may read it."""
    query: dict[str, Any] = dict(request.query_params)
    since, until, model = usage_filters(query)
    group = query.get("group") or "day"
    if group not in USAGE_GROUPS:
        raise invalid(f"Invalid value for 'group': use {' or '.join(USAGE_GROUPS)}.", "group")
    summary = await rt.blocking(rt.store.summarise_usage, who.user_id, since=since, until=until, model=model,
                                group=group)
    return platform_ok(usage_summary_view(summary))


@router.get("/api/v1/pay/model-rates")
async def model_rates(who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """Every catalog model this key may use, priced for the caller's effective tier."""
    catalog = rt.catalogs.current()
    multiplier = catalog.multiplier(who.tier)
    return platform_ok({
        name: rate_view(spec, multiplier)
        for name, spec in sorted(catalog.models.items())
        if permits(who.key.permissions, name)
    })


# --- request fields -------------------------------------------------------------------------------

def usage_filters(query: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    """The `since`, `until` (ISO times) and `model` filters of a usage route's query."""
    return loose_time(query, "since"), loose_time(query, "until"), query.get("model") or None


def key_reference(body: dict[str, Any]) -> dict[str, str | None]:
    """Which key a request names: its full `key`, or its `key_id` (400 when neither)."""
    full = (field(body, "key", str) or "").strip()
    key_id = (field(body, "key_id", str) or "").strip()
    if not full and not key_id:
        raise invalid("Missing required parameter: 'key' or 'key_id'.", "key")
    return {"full_key": full or None, "key_id": key_id or None}


# The fields of the key routes; any other is refused by name rather than silently ignored. A
# create takes no reference and no state (it would silently not apply them); a delete reads only
# the reference and ignores the rest of a key's fields.
_KEY_SETTINGS = ("remark", "permissions", "rpm", "max_fee", "expired_at")
_REFERENCE = ("key", "key_id")
CREATE_FIELDS = _KEY_SETTINGS
UPDATE_FIELDS = (*_REFERENCE, *_KEY_SETTINGS, "is_disabled")
DELETE_FIELDS = UPDATE_FIELDS


def only_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """`body`, refused (400 naming them) when it has fields the route does not take."""
    unknown = [name for name in body if name not in allowed]
    if "is_admin" in unknown:
        raise invalid("Invalid parameter 'is_admin': it cannot be set or cleared through the API.", "is_admin")
    if unknown:
        names = ", ".join(f"'{n}'" for n in unknown[:5])
        raise invalid(
            f"Unknown parameter{'s' if len(unknown) > 1 else ''} {names}: this route takes "
            f"{', '.join(allowed)}.", unknown[0],
        )
    return body


def key_changes(body: dict[str, Any], *, update: bool) -> dict[str, Any]:
    """The key fields a create or update request sets, read from JSON or form values and checked by
    `accounts` (the same ranges the CLI gets) before anything is written.

    Only fields present in the body are returned; for the nullable ones (`rpm`, `max_fee`,
    `expired_at`) a null or empty value clears them. `is_admin` is never settable here: admin keys
    are the operator's to mint.
    """
    only_fields(body, UPDATE_FIELDS if update else CREATE_FIELDS)
    readers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "remark": lambda b: field(b, "remark", str, default=""),
        "permissions": lambda b: b.get("permissions"),
        "rpm": lambda b: loose_int(b, "rpm"),
        "max_fee": lambda b: loose_money(b, "max_fee"),
        "expired_at": lambda b: loose_time(b, "expired_at"),
    }
    out = {name: read(body) for name, read in readers.items() if name in body}
    if update and body.get("is_disabled") not in (None, ""):
        out["is_disabled"] = loose_bool(body, "is_disabled")
    try:
        return accounts.check_key_fields(out)
    except accounts.AccountError as exc:
        raise invalid(str(exc), exc.param) from None


# --- helpers --------------------------------------------------------------------------------------

async def _limit(rt: Runtime, who: Caller, bucket: str, per_second: int) -> None:
    await rt.blocking(rt.gate.hit, who, f"mgmt-{bucket}:{who.user_id}", per_second, 1.0)


async def _own_key(rt: Runtime, who: Caller, reference: dict[str, str | None]) -> Key:
    try:
        return await rt.blocking(accounts.own_key, rt.store, who.user_id, **reference)
    except accounts.KeyNotFound as exc:
        raise _not_found(exc) from None


def _not_found(exc: accounts.KeyNotFound) -> GatewayError:
    return GatewayError("not_found", str(exc), param=exc.param)


async def _fresh_user(rt: Runtime, who: Caller) -> User:
    """The user as stored now, not as cached with the key: these routes promise the store's figures."""
    user = await rt.blocking(rt.store.get_user, who.user_id)
    if user is None:  # removed since the key was resolved
        raise GatewayError("invalid_api_key", "Invalid API key.")
    return user


# The web console (API.md 8) is served by this family too, so on AWS by the management function.
console.add_routes(router)
# So are the API's schema and its Swagger UI page (/openapi.json, /docs), which describe every family.
apidocs.add_routes(router)
