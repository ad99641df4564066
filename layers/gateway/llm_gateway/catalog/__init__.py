"""The model catalog: the default file shipped with the package, merged with store overrides.

Overrides written by `llm-gateway models set` / `tiers set` land in the store; every process polls
the store's catalog version at most once per cache window, so a change reaches running servers
within the contract's 5 seconds without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from typing import Any

from ..money import to_micros
from ..providers import default_wire
from ..store.base import TIERS, Store
from .channels import Channel, parse_channels

# Prices per 1M tokens, held as micros per token.
TOKEN_PRICES = ("input", "output", "cache_read", "cache_write", "audio_input", "audio_output")
# Every price a model may have, in the order the contract lists them (API.md 5.1 model-rates).
PRICE_FIELDS = TOKEN_PRICES + ("per_request", "per_image", "per_1m_chars")
# What a model is for (API.md 3.5, 6): which routes serve it.
KINDS = ("chat", "embedding", "image", "speech", "realtime", "task", "search")
# Models served by the built-in mock provider without a catalog entry of their own.
MOCK_PREFIX = "mock-"
WILDCARD = "*"


@dataclass(frozen=True)
class Prices:
    """A model's prices as integer micros, parsed once from the catalog's decimal strings.

    Token prices (`TOKEN_PRICES`) are micros per 1M tokens, so: micro-micros per token; likewise
    `per_1m_chars` per character. `per_request` is micros per call, or per pool ({"FAST": micros,
    "NORMAL": micros}); `per_image` is micros per image by "SIZE/QUALITY", where either side may be
    the wildcard "*" and "*" alone matches every image. billing.cost turns them into money.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    audio_input: int = 0
    audio_output: int = 0
    per_request: int | dict[str, int] = 0
    per_image: dict[str, int] = field(default_factory=dict)
    per_1m_chars: int = 0

    # Whether the model has no price at all (it costs nothing and needs no funds); set once, since
    # admission and settlement ask it on every call.
    free: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pools = self.per_request.values() if isinstance(self.per_request, dict) else [self.per_request]
        free = not (
            any(getattr(self, f) for f in TOKEN_PRICES) or self.per_1m_chars or any(pools)
            or any(self.per_image.values())
        )
        object.__setattr__(self, "free", free)


def image_price_key(text: str) -> str:
    """A `per_image` key as the catalog holds it: "SIZE/QUALITY" with either side possibly "*",
    or "*" alone ("*/*" is the same). ValueError for anything else."""
    key = str(text).strip()
    if key in (WILDCARD, f"{WILDCARD}/{WILDCARD}"):
        return WILDCARD
    size, slash, quality = key.partition("/")
    if not (slash and size and quality) or "/" in quality or any(c.isspace() for c in key):
        raise ValueError(f"an image price is keyed SIZE/QUALITY (either may be '*', or '*' alone): {text!r}")
    return key


def pool_name(text: str) -> str:
    """A per-request pool's name ("FAST", "NORMAL"): letters, digits, '-' and '_'."""
    name = str(text).strip()
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"a pool is named with letters, digits, '-' or '_': {text!r}")
    return name


def parse_prices(raw: dict[str, Any]) -> Prices:
    """Prices from a catalog entry (the file or an override): decimal strings (or integers), with
    `per_request` a string or {pool: string} and `per_image` {"SIZE/QUALITY": string}. Absent is 0.
    MoneyError / ValueError for a value the gateway cannot hold exactly."""
    fields: dict[str, Any] = {f: to_micros(raw.get(f) or "0") for f in (*TOKEN_PRICES, "per_1m_chars")}
    per_request = raw.get("per_request") or "0"
    if isinstance(per_request, dict):
        fields["per_request"] = {pool_name(p): to_micros(v) for p, v in per_request.items()}
    else:
        fields["per_request"] = to_micros(per_request)
    per_image = raw.get("per_image") or {}
    if not isinstance(per_image, dict):
        raise ValueError(f"per_image is {{\"SIZE/QUALITY\": price}}: {per_image!r}")
    fields["per_image"] = {image_price_key(k): to_micros(v) for k, v in per_image.items()}
    return Prices(**fields)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    upstream_model: str
    encoding: str = "o200k_base"
    max_input_tokens: int = 128_000
    max_output_tokens: int = 4096
    endpoint: str = "chat"
    prices: Prices = field(default_factory=Prices)
    rpm: dict[str, int] = field(default_factory=dict)
    serialize_messages: bool = False
    price_source: dict[str, str] = field(default_factory=dict)
    wire: str = "openai"  # the upstream's API format: "openai" or "anthropic"
    kind: str = "chat"  # one of KINDS



@dataclass(frozen=True)
class TierSpec:
    name: str
    rpm: int
    multiplier: Fraction


def _spec(name: str, raw: dict[str, Any]) -> ModelSpec:
    prices = parse_prices(raw)
    kind = raw.get("kind") or "chat"
    if kind not in KINDS:
        raise ValueError(f"model {name}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    return ModelSpec(
        name=name,
        provider=raw.get("provider", "openai"),
        upstream_model=raw.get("upstream_model") or name,
        encoding=raw.get("encoding") or ("cl100k_base" if raw.get("provider") == "anthropic" else "o200k_base"),
        max_input_tokens=int(raw.get("max_input_tokens") or 128_000),
        max_output_tokens=int(raw.get("max_output_tokens") or 4096),
        endpoint=raw.get("endpoint", "chat"),
        prices=prices,
        rpm={t: int(n) for t, n in (raw.get("rpm") or {}).items()},
        serialize_messages=bool(raw.get("serialize_messages", False)),
        price_source=raw.get("price_source") or {},
        wire=raw.get("wire") or default_wire(raw.get("provider", "openai")),
        kind=kind,
    )


@lru_cache(maxsize=1)
def default_catalog() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("models.json").read_text())


class Catalog:
    """Models and tiers as the gateway sees them right now."""

    def __init__(self, raw: dict[str, Any], overrides: dict[str, dict[str, dict[str, Any]]] | None = None):
        overrides = overrides or {}
        raw_models = {k: dict(v) for k, v in raw["models"].items()}
        for name, fields in (overrides.get("models") or {}).items():
            merged = {**raw_models.get(name, {}), **fields}
            if "rpm" in fields and name in raw_models:
                merged["rpm"] = {**(raw_models[name].get("rpm") or {}), **(fields["rpm"] or {})}
            raw_models[name] = merged
        self.models: dict[str, ModelSpec] = {n: _spec(n, m) for n, m in raw_models.items()}
        self.channels: tuple[Channel, ...] = ()  # the stored channels (catalog.channels), set by CatalogSource
        self.tiers: dict[str, TierSpec] = {}
        tier_over = overrides.get("tiers") or {}
        for t in TIERS:
            base = {**raw["tiers"].get(t, {}), **tier_over.get(t, {})}
            self.tiers[t] = TierSpec(t, int(base.get("rpm", 60)), Fraction(str(base.get("multiplier", "1"))))

    def get(self, name: str) -> ModelSpec | None:
        spec = self.models.get(name)
        if spec is None and name.startswith(MOCK_PREFIX) and len(name) > len(MOCK_PREFIX):
            template = self.models.get("mock-gpt") or _spec("mock-gpt", {"provider": "mock"})
            spec = replace(template, name=name, upstream_model=name)
        return spec

    def rpm(self, spec: ModelSpec, tier: str) -> int:
        return spec.rpm.get(tier) or self.tiers[tier].rpm

    def multiplier(self, tier: str) -> Fraction:
        return self.tiers[tier].multiplier


class CatalogSource:
    """Hands out the current Catalog, re-reading store overrides at most once per `ttl` seconds."""

    def __init__(self, store: Store, ttl: float = 2.0) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._version = -1
        self._checked = 0.0

    def refresh(self) -> None:
        """Re-read overrides on the next `current()` (after this process changed them itself)."""
        self._checked = -1e18

    @property
    def last(self) -> Catalog:
        """The catalog last handed out, without a store read (the one this request was served from)."""
        return self._catalog if self._catalog is not None else self.current()

    def stale(self) -> bool:
        """Whether the next `current()` would read the store (run `current` off the loop then)."""
        return self._catalog is None or time.monotonic() - self._checked >= self._ttl

    def current(self) -> Catalog:
        now = time.monotonic()
        if self._catalog is not None and now - self._checked < self._ttl:
            return self._catalog
        with self._lock:
            if self._catalog is None or now - self._checked >= self._ttl:
                version = self._store.catalog_version()
                if self._catalog is None or version != self._version:
                    catalog = Catalog(default_catalog(), self._store.get_catalog_overrides())
                    list_channels = getattr(self._store, "list_channels", None)
                    if list_channels is not None:
                        catalog.channels = parse_channels(list_channels())
                    self._catalog = catalog
                    self._version = version
                self._checked = now
        return self._catalog
