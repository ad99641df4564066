"""The per-process objects every request shares: store, catalog, key cache, gate, providers.

Built once per process (one Lambda container, one uvicorn worker) on first use and reused, so warm
requests pay for no client or connection set-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from . import logs
from .admission.gate import Gate
from .admission.keys import KeyResolver
from .billing.retry import Parking, housekeeping
from .catalog import CatalogSource
from .catalog.channels import Router
from .config import Settings, get_settings
from .providers import Providers
from .store import Store, open_store
from .store.base import WouldWait

T = TypeVar("T")


class Blocking:
    """Runs the store's blocking calls off the event loop, on a pool of this process's threads.

    Under `serve` one worker carries thousands of streams on one loop: a store call made on the loop
    (a SQLite lock wait, a DynamoDB round trip, a settlement's retry sleep) would stall every one of
    them. A Lambda container serves one request at a time, so there the calls run inline and save the
    thread hop (`threads=0`).
    """

    def __init__(self, threads: int, attempt: Callable[..., Any] | None = None) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store") if threads > 0 else None
        # A store that can tell a call that would wait (SQLite's lock) runs the others right here:
        # handing a 50 µs call to a thread costs several times that in GIL hand-offs.
        self._attempt = attempt

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return fn(*args, **kwargs)
        if self._attempt is not None:
            try:
                return self._attempt(fn, *args, **kwargs)  # it need not wait: done, here and now
            except WouldWait:
                pass
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def finish(self, fn: Callable[..., T], /, *args: Any, undo: Callable[[T], Any] | None = None,
                     **kwargs: Any) -> T:
        """As a call, but one that completes even when the awaiting task is cancelled (a client that
        left mid-stream must still be charged): the work runs to its end; only the wait is given up.
        `undo`, if given, then runs on the work's result in its thread (a reservation nobody will
        settle is released)."""
        if self._pool is None:
            return fn(*args, **kwargs)
        if self._attempt is not None:
            try:
                return self._attempt(fn, *args, **kwargs)
            except WouldWait:
                pass
        work: Future[T] = self._pool.submit(fn, *args, **kwargs)
        try:
            return await asyncio.shield(asyncio.wrap_future(work))
        except asyncio.CancelledError:
            if undo is not None:
                work.add_done_callback(lambda done: done.exception() is None and undo(done.result()))
            raise

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def default_store_threads() -> int:
    """GATEWAY_STORE_THREADS, else none on Lambda (one request at a time) and 16 elsewhere."""
    configured = os.environ.get("GATEWAY_STORE_THREADS")
    if configured:
        return max(0, int(configured))
    return 0 if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else 16


@dataclass
class Runtime:
    settings: Settings
    store: Store
    catalogs: CatalogSource
    keys: KeyResolver
    gate: Gate
    providers: Providers
    router: Router
    blocking: Blocking = field(default_factory=lambda: Blocking(default_store_threads()))
    parking: Parking | None = None  # where a settlement that cannot be written goes (None: the store)

    @classmethod
    def build(cls, settings: Settings | None = None, store: Store | None = None) -> Runtime:
        settings = settings or get_settings()
        store = store or open_store(settings.store_url, settings.usage_retention_days)
        if settings.store_url.startswith("sqlite:"):
            store.init()  # the embedded store initialises itself; on AWS the template creates tables
        catalogs = CatalogSource(store, ttl=settings.cache_ttl)
        providers = Providers(settings)
        return cls(
            settings=settings,
            store=store,
            catalogs=catalogs,
            keys=KeyResolver(store, ttl=settings.cache_ttl),
            gate=Gate(store, catalogs),
            providers=providers,
            router=Router(providers, cooldown=settings.channel_cooldown, max_attempts=settings.max_attempts),
            blocking=Blocking(default_store_threads(), getattr(store, "attempt", None)),
            parking=Parking(store, settings.settlement_queue_url),
        )

    async def housekeeping(self, every: float) -> None:
        """Forever, every `every` seconds: apply parked settlements and prune usage past the
        retention (billing.retry.housekeeping), off the loop; a failing round is logged, not fatal."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.blocking(housekeeping, self.store, self.settings.usage_retention_days)
            except Exception:  # noqa: BLE001 - the next round tries again
                logs.log("housekeeping failed", level=logging.WARNING, exc_info=True)
