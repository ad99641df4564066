"""`llm-gateway`: serve the gateway and manage users, keys, money and the catalog.

Every command prints one JSON object on stdout. Failure exits non-zero with `{"error": "..."}`
(2 for bad usage). Commands act on the store named by GATEWAY_STORE_URL, the same one the servers
use, so their changes reach running servers within the cache window (≤ 5 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from . import accounts
from .money import MoneyError, format_micros, to_micros
from .store.base import TIERS
from .times import parse_iso

EXIT_FAILURE = 1
EXIT_USAGE = 2
MAX_TOKENS = 1_000_000_000  # a model's max input/output tokens: an integer both stores and views hold


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _store():
    from .config import get_settings
    from .store import open_store

    store = open_store(get_settings().store_url)
    if get_settings().store_url.startswith("sqlite:"):
        store.init()
    return store


def _money(value: str, what: str) -> int:
    try:
        return to_micros(value)
    except MoneyError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _time_arg(value: str | None, flag: str) -> float | None:
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise UsageError(f"{flag}: not an ISO-8601 time: {value}") from None


def _currency() -> str:
    from .config import get_settings

    return get_settings().currency


# --- commands -----------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    """Bind the port, then set up the store and announce, then serve on the socket already bound: a
    port in use fails before anything is written (no admin key created that nobody would see) or
    announced, and a client that reads the announcement can connect at once."""
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port: expected a port from 1 to 65535: {args.port}")
    if args.workers < 1:
        raise UsageError(f"--workers: expected at least 1: {args.workers}")
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        return _serve_on(sock, args)
    finally:
        sock.close()


def _listen(host: str, port: int):
    """A listening TCP socket on host:port, as uvicorn's Config.bind_socket makes one."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # workers receive it
    return sock


def _serve_on(sock, args: argparse.Namespace) -> int:
    import uvicorn

    from .config import get_settings
    from .store import open_store

    settings = get_settings()
    store = open_store(settings.store_url)
    if settings.store_url.startswith("sqlite:"):
        store.init()
    admin_key = accounts.bootstrap_admin(store)
    out: dict[str, Any] = {
        "status": "serving",
        "url": f"http://{args.host}:{args.port}",
        "store": settings.store_url,
        "workers": args.workers,
    }
    if admin_key:
        out["admin_user"] = "admin"
        out["admin_key"] = admin_key
        out["note"] = "This admin key is shown once; store it now."
    kwargs: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "factory": True,
        "log_level": "warning",
        "access_log": False,
        "timeout_keep_alive": 75,
    }
    try:
        import uvloop  # noqa: F401

        kwargs["loop"] = "uvloop"
    except ImportError:
        pass
    try:
        import httptools  # noqa: F401

        kwargs["http"] = "httptools"
    except ImportError:
        pass
    config = uvicorn.Config("llm_gateway.http.server:app_factory", **kwargs)
    _emit(out)
    try:
        if args.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C, re-raised by uvicorn after a graceful shutdown (as uvicorn.run does)
        return 0
    return 0 if server.started else EXIT_FAILURE


def cmd_store_init(args: argparse.Namespace) -> int:
    from .config import get_settings

    store = _store()
    store.init()
    _emit({"status": "ok", "store": get_settings().store_url})
    return 0


def cmd_users_create(args: argparse.Namespace) -> int:
    from .store import AlreadyExists
    from .views import user_view

    store = _store()
    try:
        user = accounts.create_user(
            store, args.user_id, tier=args.tier, balance=_money(args.balance, "--balance"),
            membership_days=args.membership_days,
        )
    except AlreadyExists:
        return _fail(f"user '{args.user_id}' already exists")
    _emit(user_view(user, _currency()))
    return 0


def _get_user(store, user_id: str):
    user = store.get_user(user_id)
    if user is None:
        raise LookupError(f"no user '{user_id}'")
    return user


def cmd_users_show(args: argparse.Namespace) -> int:
    from .views import user_view

    _emit(user_view(_get_user(_store(), args.user_id), _currency()))
    return 0


def cmd_users_topup(args: argparse.Namespace) -> int:
    from .views import user_view

    amount = _money(args.amount, "amount")
    store = _store()
    _get_user(store, args.user_id)
    _emit(user_view(accounts.top_up(store, args.user_id, amount), _currency()))
    return 0


def cmd_users_debit(args: argparse.Namespace) -> int:
    """Take money on purpose: never below zero, recorded in the usage history with its reason."""
    from .views import user_view

    amount = _money(args.amount, "amount")
    store = _store()
    _get_user(store, args.user_id)
    try:
        user = accounts.debit(store, args.user_id, amount, args.reason)
    except accounts.InsufficientBalance as exc:
        return _fail(str(exc))
    _emit(user_view(user, _currency()))
    return 0


def cmd_users_set_tier(args: argparse.Namespace) -> int:
    from .views import user_view

    store = _store()
    _get_user(store, args.user_id)
    _emit(user_view(accounts.set_membership(store, args.user_id, args.tier, args.membership_days), _currency()))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from .views import key_view

    store = _store()
    _get_user(store, args.user_id)
    expires = _time_arg(args.expires, "--expires")
    key, full = accounts.issue_key(
        store, args.user_id,
        permissions=accounts.parse_permissions(args.models),
        is_admin=args.admin,
        remark=args.remark or "",
        rpm=args.rpm,
        max_fee=_money(args.max_fee, "--max-fee") if args.max_fee is not None else None,
        expired_at=expires,
    )
    _emit(key_view(key, full))
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from .views import key_view

    store = _store()
    _get_user(store, args.user_id)
    _emit({"user_id": args.user_id, "keys": [key_view(k) for k in store.list_keys(args.user_id)]})
    return 0


def cmd_keys_disable(args: argparse.Namespace) -> int:
    from .store import NotFound
    from .views import key_view

    try:
        key = accounts.update_key(_store(), args.key_id, is_disabled=True)
    except NotFound:
        return _fail(f"no key '{args.key_id}'")
    _emit(key_view(key))
    return 0


def cmd_keys_delete(args: argparse.Namespace) -> int:
    from .store import NotFound

    try:
        _store().delete_key(args.key_id)
    except NotFound:
        return _fail(f"no key '{args.key_id}'")
    _emit({"deleted": args.key_id})
    return 0


def _catalog_views(catalog) -> dict[str, Any]:
    models = {}
    for name, spec in sorted(catalog.models.items()):
        models[name] = {
            "provider": spec.provider,
            "kind": spec.kind,
            "upstream_model": spec.upstream_model,
            "max_input_tokens": spec.max_input_tokens,
            "max_output_tokens": spec.max_output_tokens,
            **_price_views(spec.prices),
            "rpm": {t: catalog.rpm(spec, t) for t in catalog.tiers},
            "serialize_messages": spec.serialize_messages,
            "price_source": spec.price_source,
        }
    tiers = {t: {"rpm": s.rpm, "multiplier": str(float(s.multiplier)) if s.multiplier.denominator != 1
                 else str(s.multiplier.numerator)} for t, s in catalog.tiers.items()}
    return {"currency": _currency(), "models": models, "tiers": tiers}


def _price_views(prices) -> dict[str, Any]:
    """Every price of a model as the catalog holds it (no multiplier): decimal strings, with
    `per_request` a string or {pool: string} and `per_image` {"SIZE/QUALITY": string}."""
    from .catalog import TOKEN_PRICES

    per_request = prices.per_request
    return {
        **{f: format_micros(getattr(prices, f)) for f in TOKEN_PRICES},
        "per_request": ({p: format_micros(m) for p, m in per_request.items()} if isinstance(per_request, dict)
                        else format_micros(per_request)),
        "per_image": {k: format_micros(m) for k, m in prices.per_image.items()},
        "per_1m_chars": format_micros(prices.per_1m_chars),
    }


def cmd_models_list(args: argparse.Namespace) -> int:
    from .catalog import Catalog, default_catalog

    store = _store()
    _emit(_catalog_views(Catalog(default_catalog(), store.get_catalog_overrides())))
    return 0


def cmd_models_set(args: argparse.Namespace) -> int:
    from .catalog import KINDS, Catalog, default_catalog
    from .providers import PROVIDERS

    fields: dict[str, Any] = {}
    if args.provider:
        if args.provider not in PROVIDERS:
            raise UsageError(f"--provider: unknown provider '{args.provider}': use one of {', '.join(PROVIDERS)}")
        fields["provider"] = args.provider
    if args.upstream_model:
        fields["upstream_model"] = args.upstream_model
    if args.kind is not None:
        if args.kind not in KINDS:
            raise UsageError(f"--kind: unknown kind '{args.kind}': use one of {', '.join(KINDS)}")
        fields["kind"] = args.kind
    for name in ("input", "output", "cache_read", "cache_write", "audio_input", "audio_output", "per_1m_chars"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = _price(value, "--" + name.replace("_", "-"))
    for name in ("max_input_tokens", "max_output_tokens"):
        value = getattr(args, name)
        if value is not None:
            if not 1 <= value <= MAX_TOKENS:
                raise UsageError(f"--{name.replace('_', '-')}: expected an integer from 1 to {MAX_TOKENS}")
            fields[name] = value
    if args.rpm:
        fields["rpm"] = _tier_rpms(args.rpm)
    per_request = _per_request(args.per_request) if args.per_request else None
    per_image = _per_image(args.per_image) if args.per_image else None
    store = _store()
    overrides = store.get_catalog_overrides()
    if "rpm" in fields:  # per tier: a tier not named keeps the limit an earlier `models set` gave it
        earlier = overrides["models"].get(args.model, {}).get("rpm") or {}
        fields["rpm"] = {**earlier, **fields["rpm"]}
    current = Catalog(default_catalog(), overrides).models.get(args.model)
    if current is None and "provider" not in fields:
        raise UsageError(
            f"'{args.model}' is not in the catalog: a new model needs --provider ({', '.join(PROVIDERS)})"
        )
    held: dict[str, Any] = (
        _price_views(current.prices) if current is not None else {"per_request": "0", "per_image": {}}
    )
    if per_request is not None:  # pools and sizes not named keep their prices, as tiers do for --rpm
        if isinstance(per_request, dict) and isinstance(held["per_request"], dict):
            per_request = {**held["per_request"], **per_request}
        fields["per_request"] = per_request
    if per_image is not None:
        fields["per_image"] = {**held["per_image"], **per_image}
    store.set_model_override(args.model, fields)
    after = _catalog_views(Catalog(default_catalog(), store.get_catalog_overrides()))
    _emit({"model": args.model, **after["models"][args.model]})
    return 0


def _price(value: str, flag: str) -> str:
    accounts.check_amount(_money(value, flag), flag)  # a negative price would pay the caller
    return value


def _per_request(items: list[str]) -> str | dict[str, str]:
    """`--per-request USD` as a price, or `--per-request POOL=USD ...` as {pool: price}."""
    from .catalog import pool_name

    pools = [item for item in items if "=" in item]
    if pools and len(pools) != len(items) or not pools and len(items) != 1:
        raise UsageError(f"--per-request: expected one USD, or POOL=USD for each pool: {' '.join(items)}")
    if not pools:
        return _price(items[0], "--per-request")
    prices = {}
    for item in pools:
        pool, _, usd = item.partition("=")
        try:
            pool = pool_name(pool)
        except ValueError as exc:
            raise UsageError(f"--per-request: {exc}") from None
        prices[pool] = _price(usd, f"--per-request {pool}")
    return prices


def _per_image(items: list[str]) -> dict[str, str]:
    """`--per-image SIZE/QUALITY=USD ...` as {"SIZE/QUALITY": price} ('*' allowed on either side)."""
    from .catalog import image_price_key

    prices = {}
    for item in items:
        key, eq, usd = item.rpartition("=")
        try:
            if not eq:
                raise ValueError(f"expected SIZE/QUALITY=USD: {item!r}")
            key = image_price_key(key)
        except ValueError as exc:
            raise UsageError(f"--per-image: {exc}") from None
        prices[key] = _price(usd, f"--per-image {key}")
    return prices


def _tier_rpms(items: list[str]) -> dict[str, int]:
    """`--rpm TIER=N ...` as {tier: N}."""
    rpm = {}
    for item in items:
        tier, _, n = item.partition("=")
        if tier not in TIERS or not n.isdigit():
            raise UsageError(f"--rpm: expected TIER=N with a tier of {', '.join(TIERS)}: {item}")
        rpm[tier] = accounts.check_rpm(int(n), f"--rpm {tier}")
    return rpm


def cmd_models_delete(args: argparse.Namespace) -> int:
    """Remove a model's override: an added model is gone, a default model is back to its defaults."""
    from .catalog import Catalog, default_catalog
    from .store import NotFound

    store = _store()
    defaults = default_catalog()
    try:
        store.delete_model_override(args.model)
    except NotFound:
        if args.model not in defaults["models"]:
            return _fail(f"no model '{args.model}'")
    out: dict[str, Any] = {"deleted": args.model, "restored": None}
    if args.model in defaults["models"]:
        out["restored"] = _catalog_views(Catalog(defaults, store.get_catalog_overrides()))["models"][args.model]
    _emit(out)
    return 0


def cmd_tiers_set(args: argparse.Namespace) -> int:
    from fractions import Fraction

    from .catalog import Catalog, default_catalog

    fields: dict[str, Any] = {}
    accounts.check_tier(args.tier)
    if args.rpm is not None:
        fields["rpm"] = accounts.check_rpm(args.rpm, "--rpm")
    if args.multiplier is not None:
        try:
            m = Fraction(args.multiplier)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"--multiplier: not a number: {args.multiplier}") from None
        if m <= 0:
            raise UsageError("--multiplier must be positive")
        fields["multiplier"] = args.multiplier
    store = _store()
    store.set_tier_override(args.tier, fields)
    after = _catalog_views(Catalog(default_catalog(), store.get_catalog_overrides()))
    _emit({"tier": args.tier, **after["tiers"][args.tier]})
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from .views import usage_page_view

    store = _store()
    _get_user(store, args.user_id)
    since = _time_arg(args.since, "--since")
    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    try:
        page = store.list_usage(args.user_id, since=since, model=args.model, limit=args.limit, cursor=args.cursor)
    except ValueError as exc:  # the only argument the store itself judges is the cursor
        raise UsageError(f"--cursor: {exc}") from None
    view = usage_page_view(page)
    for shown, record in zip(view["records"], page.records, strict=True):  # the operator's: channel and tries
        shown.update(channel=record.channel or None, attempts=record.attempts)
    _emit({"user_id": args.user_id, **view})
    return 0


# --- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llm-gateway", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_serve)

    st = sub.add_parser("store").add_subparsers(dest="store_command", required=True, parser_class=_Parser)
    st.add_parser("init").set_defaults(func=cmd_store_init)

    u = sub.add_parser("users").add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    uc = u.add_parser("create")
    uc.add_argument("user_id")
    uc.add_argument("--tier", default="regular", choices=TIERS)
    uc.add_argument("--balance", default="0")
    uc.add_argument("--membership-days", type=float)
    uc.set_defaults(func=cmd_users_create)
    us = u.add_parser("show")
    us.add_argument("user_id")
    us.set_defaults(func=cmd_users_show)
    ut = u.add_parser("topup")
    ut.add_argument("user_id")
    ut.add_argument("amount")
    ut.set_defaults(func=cmd_users_topup)
    ud = u.add_parser("debit", help="take money from a user, recorded in the usage history")
    ud.add_argument("user_id")
    ud.add_argument("amount")
    ud.add_argument("--reason", required=True, help="why: shown as the record's model in `usage`")
    ud.set_defaults(func=cmd_users_debit)
    uset = u.add_parser("set-tier")
    uset.add_argument("user_id")
    uset.add_argument("tier", choices=TIERS)
    uset.add_argument("--membership-days", type=float)
    uset.set_defaults(func=cmd_users_set_tier)

    k = sub.add_parser("keys").add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    kc = k.add_parser("create")
    kc.add_argument("user_id")
    kc.add_argument("--models")
    kc.add_argument("--admin", action="store_true")
    kc.add_argument("--remark")
    kc.add_argument("--rpm", type=int)
    kc.add_argument("--max-fee")
    kc.add_argument("--expires")
    kc.set_defaults(func=cmd_keys_create)
    kl = k.add_parser("list")
    kl.add_argument("user_id")
    kl.set_defaults(func=cmd_keys_list)
    kd = k.add_parser("disable")
    kd.add_argument("key_id")
    kd.set_defaults(func=cmd_keys_disable)
    kx = k.add_parser("delete")
    kx.add_argument("key_id")
    kx.set_defaults(func=cmd_keys_delete)

    m = sub.add_parser("models").add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    m.add_parser("list").set_defaults(func=cmd_models_list)
    ms = m.add_parser("set")
    ms.add_argument("model")
    ms.add_argument("--provider")
    ms.add_argument("--upstream-model")
    ms.add_argument("--input")
    ms.add_argument("--output")
    ms.add_argument("--cache-read")
    ms.add_argument("--cache-write")
    ms.add_argument("--kind", help="chat, embedding, image, speech, realtime, task or search")
    ms.add_argument("--audio-input", metavar="USD_PER_1M")
    ms.add_argument("--audio-output", metavar="USD_PER_1M")
    ms.add_argument("--per-request", nargs="+", action="extend", metavar="USD | POOL=USD")
    ms.add_argument("--per-image", nargs="+", action="extend", metavar="SIZE/QUALITY=USD")
    ms.add_argument("--per-1m-chars", metavar="USD")
    ms.add_argument("--max-input-tokens", type=int)
    ms.add_argument("--max-output-tokens", type=int)
    ms.add_argument("--rpm", nargs="+", action="extend", metavar="TIER=N")
    ms.set_defaults(func=cmd_models_set)
    md = m.add_parser("delete", help="remove an override or an added model")
    md.add_argument("model")
    md.set_defaults(func=cmd_models_delete)

    t = sub.add_parser("tiers").add_subparsers(dest="tiers_command", required=True, parser_class=_Parser)
    ts = t.add_parser("set")
    ts.add_argument("tier", choices=TIERS)
    ts.add_argument("--rpm", type=int)
    ts.add_argument("--multiplier")
    ts.set_defaults(func=cmd_tiers_set)

    us2 = sub.add_parser("usage")
    us2.add_argument("user_id")
    us2.add_argument("--since")
    us2.add_argument("--model")
    us2.add_argument("--limit", type=int, default=20)
    us2.add_argument("--cursor", help="a previous answer's next_cursor: the page after it")
    us2.set_defaults(func=cmd_usage)

    from .cli_channels import register as register_channels

    register_channels(sub, _Parser)
    return p


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    _emit({"error": message})
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except accounts.AccountError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except LookupError as exc:
        return _fail(str(exc.args[0] if exc.args else exc))
    except Exception as exc:  # noqa: BLE001 - one JSON error line, never a traceback
        return _fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
