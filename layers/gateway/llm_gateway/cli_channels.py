"""`llm-gateway channels ...` (API.md 6 and 7): the operator's upstream channels, in the store.

A channel names its credential by the variable (or secret key) that holds it; the value is read only
where a call is made (`channels test` here, the servers otherwise), never written, never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from .accounts import AccountError
from .catalog.channels import CHANNEL_FIELDS, Channel, parse_channel


class BadChannel(AccountError):
    """A channel command's bad argument: the CLI answers it as bad usage (exit 2), whichever way the
    CLI module was loaded (`python -m` makes a second copy of its own error class)."""


def _options(p: argparse.ArgumentParser, adding: bool) -> None:
    p.add_argument("name", help="the channel's name (yours to choose; clients never see it)")
    p.add_argument("--provider", required=adding,
                   help="openai, azure, anthropic, bedrock, mock (platform routes: midjourney, google-cse, serper, "
                        "azure-speech)" + ("" if adding else "; unchanged when absent"))
    p.add_argument("--base-url", metavar="URL",
                   help="the upstream's address (default: the provider's, or its *_BASE_URL / *_ENDPOINT setting)")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="the NAME of the variable or secret key holding the credential (never the credential)")
    p.add_argument("--models", metavar="A,B*", help="catalog models, comma-separated; a trailing * is a prefix; "
                                                   "empty: every model of the provider")
    p.add_argument("--map", action="append", default=[], metavar="MODEL=UPSTREAM",
                   help="the upstream's name for a model (Azure deployment, Bedrock model id); repeatable")
    p.add_argument("--priority", type=int, metavar="N", help="higher is tried first (default 0)")
    p.add_argument("--weight", type=int, metavar="N", help="share of traffic within its priority (default 1)")
    p.add_argument("--region", help="AWS region (bedrock) or Azure region (azure-speech)")
    p.add_argument("--api-version", metavar="V", help="Azure OpenAI api-version")


def register(sub: Any, parser_class: type) -> None:
    """The `channels` command and its subcommands, under the CLI's subparsers `sub`."""
    from .cli import _command

    what = "upstream channels: several keys, endpoints and providers per model, with failover"
    c = sub.add_parser("channels", help=what, description=what).add_subparsers(
        dest="channels_command", required=True, parser_class=parser_class, metavar="COMMAND")
    _options(_command(c, "add", "a new channel (--provider needed)", cmd_add,
                      "llm-gateway channels add openai-2 --provider openai --api-key-env OPENAI_KEY_2 "
                      "--models 'gpt-*' --priority 1"), adding=True)
    _options(_command(c, "set", "change a channel's fields (the others are kept)", cmd_set,
                      "llm-gateway channels set openai-2 --weight 3"), adding=False)
    _command(c, "list", "every channel, credentials by name only", cmd_list, "llm-gateway channels list")
    for verb, func in (("enable", cmd_enable), ("disable", cmd_disable), ("delete", cmd_delete)):
        one = _command(c, verb, f"{verb} a channel (servers see it within 5 s)", func,
                       f"llm-gateway channels {verb} openai-2")
        one.add_argument("name", help="the channel's name")
    t = _command(c, "test", "one minimal real call through the channel: ok, status, latency_ms, error", cmd_test,
                 "llm-gateway channels test openai-2 --model gpt-4o-mini")
    t.add_argument("name", help="the channel's name")
    t.add_argument("--model", help="a catalog model the channel serves (default: the first it names)")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for attr in ("provider", "base_url", "api_key_env", "priority", "weight", "region", "api_version"):
        value = getattr(args, attr)
        if value is not None:
            fields[attr] = value
    if args.models is not None:
        fields["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.map:
        mapping = {}
        for item in args.map:
            model, eq, upstream = item.partition("=")
            if not (eq and model.strip() and upstream.strip()):
                raise BadChannel(f"--map: MODEL=UPSTREAM, not {item!r}")
            mapping[model.strip()] = upstream.strip()
        fields["map"] = mapping
    reference = str(fields.get("api_key_env", "x"))
    if not reference.replace("_", "").replace("-", "").replace("/", "").isalnum():
        raise BadChannel("--api-key-env names a variable or secret (letters, digits, '_', '-', '/'), not a key")
    return fields


def _check(name: str, fields: dict[str, Any]) -> Channel:
    try:
        return parse_channel(name, fields)
    except (TypeError, ValueError) as exc:
        raise BadChannel(str(exc)) from None


def _put(name: str, fields: dict[str, Any], exists: bool) -> int:
    from .cli import _emit, _store
    from .store import AlreadyExists, NotFound

    store = _store()
    current = store.list_channels().get(name)
    if exists and current is None:
        raise LookupError(f"no channel {name}")
    _check(name, {**(current or {}), **fields})
    try:
        store.put_channel(name, fields, exists=exists)
    except AlreadyExists:
        raise LookupError(f"channel {name} exists: change it with `channels set`") from None
    except NotFound:
        raise LookupError(f"no channel {name}") from None
    _emit(_check(name, store.list_channels()[name]).view())
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    return _put(args.name, _fields(args), exists=False)


def cmd_set(args: argparse.Namespace) -> int:
    return _put(args.name, _fields(args), exists=True)


def cmd_enable(args: argparse.Namespace) -> int:
    return _put(args.name, {"enabled": True}, exists=True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _put(args.name, {"enabled": False}, exists=True)


def cmd_list(args: argparse.Namespace) -> int:
    from .cli import _emit, _store

    raw = _store().list_channels()
    _emit({"channels": [_check(name, raw[name]).view() for name in sorted(raw)],
           "fields": list(CHANNEL_FIELDS)})
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .cli import _emit, _store
    from .store import NotFound

    try:
        _store().delete_channel(args.name)
    except NotFound:
        raise LookupError(f"no channel {args.name}") from None
    _emit({"deleted": args.name})
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """One minimal real call (one output token) through the channel: {"ok", "status", "latency_ms", "error"}."""
    from .catalog import Catalog, default_catalog
    from .cli import _emit, _store
    from .config import get_settings
    from .errors import GatewayError
    from .providers import Providers

    store = _store()
    raw = store.list_channels().get(args.name)
    if raw is None:
        raise LookupError(f"no channel {args.name}")
    channel = _check(args.name, raw)
    catalog = Catalog(default_catalog(), store.get_catalog_overrides())
    name = args.model or next((m for m in channel.models if not m.endswith("*")), None) or next(
        (n for n, s in catalog.models.items() if s.provider == channel.provider and s.kind == "chat"), None)
    spec = catalog.get(name) if name else None
    if spec is None:
        raise BadChannel("--model: name a catalog model the channel serves")
    settings = get_settings()
    if channel.api_key_env and not settings.secret(channel.api_key_env):
        _emit({"ok": False, "status": None, "latency_ms": 0,
               "error": f"{channel.api_key_env} is not set where this command runs"})
        return 1
    model = channel.upstream_model(spec)
    operation = "messages" if spec.wire == "anthropic" else "chat"
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}

    async def call() -> dict[str, Any]:
        providers = Providers(settings)
        started = time.perf_counter()
        try:
            await providers.for_channel(channel).send(operation, body, model=model)
            outcome: dict[str, Any] = {"ok": True, "status": 200, "error": None}
        except GatewayError as err:  # already worded for a caller: no credential, no upstream body
            outcome = {"ok": False, "status": err.status, "error": err.message}
        finally:
            await providers.aclose()
        return {**outcome, "latency_ms": round((time.perf_counter() - started) * 1000)}

    result = asyncio.run(call())
    _emit({k: result[k] for k in ("ok", "status", "latency_ms", "error")})
    return 0 if result["ok"] else 1
