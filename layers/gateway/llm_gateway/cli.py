"""`llm-gateway`: serve the gateway and manage users, keys, money and the catalog.

Every command prints one JSON object on stdout. Failure exits non-zero with `{"error": "..."}`
(2 for bad usage). Commands act on the store named by GATEWAY_STORE_URL, the same one the servers
use, so their changes reach running servers within the cache window (≤ 5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from . import accounts, listening
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


STORE_FOLDER = ".gateway"  # where `serve` keeps its SQLite store, under the folder it runs in


def find_store(start: Path | None = None) -> str | None:
    """GATEWAY_STORE_URL, else the nearest `.gateway/gateway.db` from `start` (the current folder)
    upwards as an absolute SQLite URL, else None (the default: `./.gateway/gateway.db`, new)."""
    if os.environ.get("GATEWAY_STORE_URL"):
        return os.environ["GATEWAY_STORE_URL"]
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        db = folder / STORE_FOLDER / "gateway.db"
        if db.is_file():
            return f"sqlite:///{db}"
    return None


def _store():
    from .config import get_settings
    from .store import open_store

    url = get_settings().store_url
    fresh = url.startswith("sqlite:") and not _sqlite_path(url).exists()
    store = open_store(url)
    if url.startswith("sqlite:"):
        store.init()
        if fresh or store.count_users() == 0:
            _note_new_store(url)
    return store


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).resolve()


def _note_new_store(url: str) -> None:
    """On stderr (stdout holds the one JSON answer): a new or empty store is worth a second look."""
    where = f"sqlite:///{_sqlite_path(url)}"
    sys.stderr.write(json.dumps({"note": (
        f"using a new, empty store: {where}. To use another, run from the folder that holds its "
        f"{STORE_FOLDER}/ (or below it), or set GATEWAY_STORE_URL."), "store": where}) + "\n")


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
        sock = listening.listen(args.host, args.port, args.workers)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        return _serve_on(sock, args)
    finally:
        sock.close()


def _raise_open_files_limit() -> None:
    """Each open stream holds two sockets (client, upstream): raise the soft limit on open files to
    the hard one, as servers do, so a default soft limit of 1,024 does not cap a worker at ~500."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform, or not allowed: serve with what there is


def _serve_on(sock, args: argparse.Namespace) -> int:
    import uvicorn

    _raise_open_files_limit()
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
        from .http.protocol import Protocol  # uvicorn's httptools protocol, a head sent with its body

        kwargs["http"] = Protocol
    except ImportError:
        pass
    config = uvicorn.Config("llm_gateway.http.server:app_factory", **kwargs)
    metrics_dir = _metrics_folder()
    _emit(out)
    try:
        if args.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=listening.worker_sockets(sock, args.host, args.port, args.workers)).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C, re-raised by uvicorn after a graceful shutdown (as uvicorn.run does)
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if server.started else EXIT_FAILURE


def _metrics_folder() -> str:
    """Where this server's workers leave their metrics snapshots (GET /metrics sums them): a folder
    of this process's own, removed when it stops; the workers inherit its name."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
    os.environ["GATEWAY_METRICS_DIR"] = folder
    return folder


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


def cmd_users_list(args: argparse.Namespace) -> int:
    from .views import user_view

    currency = _currency()
    _emit({"users": [user_view(u, currency) for u in _store().list_users()]})
    return 0


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
    return _change_key(args.key_id, is_disabled=True)


def cmd_keys_enable(args: argparse.Namespace) -> int:
    return _change_key(args.key_id, is_disabled=False)


# `keys update`: a limit given as one of these clears it
CLEAR = ("none", "")


def cmd_keys_update(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.models is not None:
        fields["permissions"] = accounts.parse_permissions(args.models)
    if args.remark is not None:
        fields["remark"] = args.remark
    if args.rpm is not None:
        fields["rpm"] = None if args.rpm.lower() in CLEAR else _integer(args.rpm, "--rpm")
    if args.max_fee is not None:
        fields["max_fee"] = None if args.max_fee.lower() in CLEAR else _money(args.max_fee, "--max-fee")
    if args.expires is not None:
        never = args.expires.lower() in (*CLEAR, "never")
        fields["expired_at"] = None if never else _time_arg(args.expires, "--expires")
    if not fields:
        raise UsageError("keys update: nothing to change: give at least one of --models, --remark, --rpm, "
                         "--max-fee, --expires")
    return _change_key(args.key_id, **fields)


def _integer(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{flag}: expected an integer or 'none': {value}") from None


def _change_key(key_id: str, **fields: Any) -> int:
    from .store import NotFound
    from .views import key_view

    try:
        key = accounts.update_key(_store(), key_id, **fields)
    except NotFound:
        return _fail(f"no key '{key_id}'")
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


def cmd_tiers_list(args: argparse.Namespace) -> int:
    from .catalog import Catalog, default_catalog

    _emit({"tiers": _catalog_views(Catalog(default_catalog(), _store().get_catalog_overrides()))["tiers"]})
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from .views import usage_page_view

    store = _store()
    _get_user(store, args.user_id)
    since = _time_arg(args.since, "--since")
    until = _time_arg(args.until, "--until")
    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    try:
        page = store.list_usage(args.user_id, since=since, until=until, model=args.model, limit=args.limit,
                                cursor=args.cursor)
    except ValueError as exc:  # the only argument the store itself judges is the cursor
        raise UsageError(f"--cursor: {exc}") from None
    view = usage_page_view(page)
    for shown, record in zip(view["records"], page.records, strict=True):  # the operator's: channel and tries
        shown.update(channel=record.channel or None, attempts=record.attempts)
    _emit({"user_id": args.user_id, **view})
    return 0


# --- parser -------------------------------------------------------------------------------------

_STORE_HELP = (
    "The store: GATEWAY_STORE_URL (sqlite:///relative.db, sqlite:////absolute.db or "
    "dynamodb://<table-prefix>), else the nearest .gateway/gateway.db from the current folder upwards, "
    "else a new ./.gateway/gateway.db (then a note on stderr names it). Every command prints one JSON "
    "object; a failure exits 1 (2 for bad usage) with {\"error\": \"...\"}. Money is in the store's "
    "currency (GATEWAY_CURRENCY, default USD) as a decimal with up to 6 places; times are ISO-8601 "
    "(2026-12-01 or 2026-12-01T09:30:00Z, UTC unless an offset is given)."
)


def _group(sub: Any, name: str, help_text: str, dest: str) -> Any:
    """A command with subcommands (`users`, `keys`, ...)."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=dest, required=True, parser_class=_Parser, metavar="COMMAND")


def _command(sub: Any, name: str, help_text: str, func: Any, example: str = "") -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=f"example:\n  {example}" if example else None,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # the example unwrapped
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llm-gateway", description=__doc__.splitlines()[0], epilog=_STORE_HELP)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    s = _command(sub, "serve", "run the gateway (every route) until Ctrl-C", cmd_serve,
                 "llm-gateway serve --host 0.0.0.0 --port 8000 --workers 2")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000, help="TCP port, 1 to 65535 (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")

    st = _group(sub, "store", "the store itself", "store_command")
    _command(st, "init", "create the tables (DynamoDB) or schema (SQLite) where missing; safe to repeat",
             cmd_store_init, "GATEWAY_STORE_URL=dynamodb://llm-gateway llm-gateway store init")

    u = _group(sub, "users", "users: balance, tier, membership", "users_command")
    uc = _command(u, "create", "create a user", cmd_users_create,
                  "llm-gateway users create alice --tier vip --balance 20 --membership-days 30")
    uc.add_argument("user_id", help="the new user's id (any text without spaces)")
    uc.add_argument("--tier", default="regular", choices=TIERS, help="tier (default regular)")
    uc.add_argument("--balance", default="0", metavar="USD", help="starting balance, e.g. 20 or 0.5 (default 0)")
    uc.add_argument("--membership-days", type=float, metavar="DAYS",
                    help="days until the tier lapses to regular, fractions allowed (default: never)")
    _command(u, "list", "every user, in order of id", cmd_users_list, "llm-gateway users list")
    us = _command(u, "show", "one user: tier, effective tier, balance, membership", cmd_users_show,
                  "llm-gateway users show alice")
    us.add_argument("user_id", help="the user's id")
    ut = _command(u, "topup", "add money to a user's balance", cmd_users_topup, "llm-gateway users topup alice 10")
    ut.add_argument("user_id", help="the user's id")
    ut.add_argument("amount", metavar="USD", help="a positive amount, e.g. 10 or 0.25")
    ud = _command(u, "debit", "take money from a user (never below 0), recorded in the usage history",
                  cmd_users_debit, 'llm-gateway users debit alice 2.5 --reason "refund reversed"')
    ud.add_argument("user_id", help="the user's id")
    ud.add_argument("amount", metavar="USD", help="a positive amount, e.g. 2.5")
    ud.add_argument("--reason", required=True, help="why: shown as the record's model in `usage`")
    uset = _command(u, "set-tier", "change a user's tier and membership", cmd_users_set_tier,
                    "llm-gateway users set-tier alice premium --membership-days 30")
    uset.add_argument("user_id", help="the user's id")
    uset.add_argument("tier", choices=TIERS, help="the new tier")
    uset.add_argument("--membership-days", type=float, metavar="DAYS",
                      help="days from now until the tier lapses to regular (0: lapsed now; default: unchanged)")

    k = _group(sub, "keys", "API keys: create, list, change, disable, delete", "keys_command")
    kc = _command(k, "create", "create a key; prints the full key once", cmd_keys_create,
                  "llm-gateway keys create alice --models 'gpt-4o,claude-*' --rpm 30 --max-fee 5")
    kc.add_argument("user_id", help="the user who owns the key")
    kc.add_argument("--models", metavar="A,B",
                    help="models the key may use, comma-separated, a trailing * matches a prefix "
                         "(e.g. 'gpt-4o,claude-*'); empty or absent: every model")
    kc.add_argument("--admin", action="store_true", help="may manage its user's keys through /api/v1/user/admin/*")
    kc.add_argument("--remark", help="a note shown with the key")
    kc.add_argument("--rpm", type=int, metavar="N", help="the key's own requests per minute, all models together")
    kc.add_argument("--max-fee", metavar="USD", help="spending cap of the key (default: none)")
    kc.add_argument("--expires", metavar="ISO", help="expiry time, e.g. 2027-01-01T00:00:00Z (default: never)")
    kl = _command(k, "list", "a user's keys, masked", cmd_keys_list, "llm-gateway keys list alice")
    kl.add_argument("user_id", help="the user's id")
    ku = _command(k, "update", "change a key's models, remark or limits (other settings unchanged)",
                  cmd_keys_update, "llm-gateway keys update key_AbC123dEf456 --rpm none --max-fee 10")
    ku.add_argument("key_id", help="the key's id (key_..., as `keys list` shows)")
    ku.add_argument("--models", metavar="A,B", help="models the key may use, as for create; '' means every model")
    ku.add_argument("--remark", help="a note shown with the key")
    ku.add_argument("--rpm", metavar="N", help="requests per minute of the key, or 'none' to remove the limit")
    ku.add_argument("--max-fee", metavar="USD", help="spending cap, or 'none' to remove it")
    ku.add_argument("--expires", metavar="ISO", help="expiry time (ISO-8601), or 'never'")
    ke = _command(k, "enable", "enable a disabled key", cmd_keys_enable, "llm-gateway keys enable key_AbC123dEf456")
    ke.add_argument("key_id", help="the key's id")
    kd = _command(k, "disable", "disable a key (refused everywhere within 5 s; `keys enable` undoes it)",
                  cmd_keys_disable, "llm-gateway keys disable key_AbC123dEf456")
    kd.add_argument("key_id", help="the key's id")
    kx = _command(k, "delete", "delete a key for good", cmd_keys_delete, "llm-gateway keys delete key_AbC123dEf456")
    kx.add_argument("key_id", help="the key's id")

    m = _group(sub, "models", "the catalog: models, their provider and prices", "models_command")
    _command(m, "list", "every model with its prices (per 1M tokens) and limits, and the tiers", cmd_models_list,
             "llm-gateway models list")
    ms = _command(m, "set", "add a model or change some of its settings (the others are kept)", cmd_models_set,
                  "llm-gateway models set gpt-4o --input 2.5 --output 10 --rpm vip=400")
    ms.add_argument("model", help="the model's name as clients send it")
    ms.add_argument("--provider", help="who serves it: openai, azure, anthropic, mock, ... (needed for a new model)")
    ms.add_argument("--upstream-model", metavar="ID", help="the upstream's name for it (Azure: the deployment)")
    ms.add_argument("--input", metavar="USD_PER_1M", help="price per 1M input tokens")
    ms.add_argument("--output", metavar="USD_PER_1M", help="price per 1M output tokens")
    ms.add_argument("--cache-read", metavar="USD_PER_1M", help="price per 1M cached input tokens read")
    ms.add_argument("--cache-write", metavar="USD_PER_1M", help="price per 1M input tokens written to a cache")
    ms.add_argument("--kind", help="chat, embedding, image, speech, realtime, task or search")
    ms.add_argument("--audio-input", metavar="USD_PER_1M", help="price per 1M audio input tokens")
    ms.add_argument("--audio-output", metavar="USD_PER_1M", help="price per 1M audio output tokens")
    ms.add_argument("--per-request", nargs="+", action="extend", metavar="USD | POOL=USD",
                    help="price per call, or per pool (FAST=0.05 NORMAL=0.03)")
    ms.add_argument("--per-image", nargs="+", action="extend", metavar="SIZE/QUALITY=USD",
                    help="price per image, e.g. 1024x1024/standard=0.04 '*/hd=0.08' (* matches any)")
    ms.add_argument("--per-1m-chars", metavar="USD", help="price per 1M input characters (speech)")
    ms.add_argument("--max-input-tokens", type=int, metavar="N", help="largest input in tokens (400 past it)")
    ms.add_argument("--max-output-tokens", type=int, metavar="N",
                    help="output cap used when a request gives no max_tokens")
    ms.add_argument("--rpm", nargs="+", action="extend", metavar="TIER=N",
                    help="requests per minute per user on a tier, e.g. regular=60 vip=300")
    md = _command(m, "delete", "remove an override or an added model (a default model gets its defaults back)",
                  cmd_models_delete, "llm-gateway models delete my-proxy-model")
    md.add_argument("model", help="the model's name")

    t = _group(sub, "tiers", "tiers: default requests per minute and price multiplier", "tiers_command")
    _command(t, "list", "every tier with its rpm and multiplier", cmd_tiers_list, "llm-gateway tiers list")
    ts = _command(t, "set", "change a tier's defaults", cmd_tiers_set, "llm-gateway tiers set vip --multiplier 0.9")
    ts.add_argument("tier", choices=TIERS, help="the tier")
    ts.add_argument("--rpm", type=int, metavar="N", help="requests per minute for models without their own limit")
    ts.add_argument("--multiplier", metavar="X", help="price multiplier, e.g. 0.9 (positive)")

    us2 = _command(sub, "usage", "a user's usage records, newest first, with totals", cmd_usage,
                   "llm-gateway usage alice --since 2026-11-01 --until 2026-12-01 --limit 50")
    us2.add_argument("user_id", help="the user's id")
    us2.add_argument("--since", metavar="ISO", help="records at or after this time")
    us2.add_argument("--until", metavar="ISO", help="records before this time")
    us2.add_argument("--model", help="only this model's records")
    us2.add_argument("--limit", type=int, default=20, metavar="N", help="records per page (default 20)")
    us2.add_argument("--cursor", help="a previous answer's next_cursor: the page after it")

    from .cli_channels import register as register_channels

    register_channels(sub, _Parser)
    return p


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    _emit({"error": message})
    return code


def main(argv: list[str] | None = None) -> int:
    found = find_store()
    if found and not os.environ.get("GATEWAY_STORE_URL"):  # servers and workers started here use it too
        from .config import reset_settings

        os.environ["GATEWAY_STORE_URL"] = found
        reset_settings()
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
