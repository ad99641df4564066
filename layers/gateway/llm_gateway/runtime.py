"""The per-process objects every request shares: store, catalog, key cache, gate, providers.

Built once per process (one Lambda container, one uvicorn worker) on first use and reused, so warm
requests pay for no client or connection set-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from .admission.gate import Gate
from .admission.keys import KeyResolver
from .catalog import CatalogSource
from .config import Settings, get_settings
from .providers import Providers
from .store import Store, open_store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    catalogs: CatalogSource
    keys: KeyResolver
    gate: Gate
    providers: Providers

    @classmethod
    def build(cls, settings: Settings | None = None, store: Store | None = None) -> "Runtime":
        settings = settings or get_settings()
        store = store or open_store(settings.store_url)
        if settings.store_url.startswith("sqlite:"):
            store.init()  # the embedded store initialises itself; on AWS the template creates tables
        catalogs = CatalogSource(store, ttl=settings.cache_ttl)
        return cls(
            settings=settings,
            store=store,
            catalogs=catalogs,
            keys=KeyResolver(store, ttl=settings.cache_ttl),
            gate=Gate(store, catalogs),
            providers=Providers(settings),
        )
