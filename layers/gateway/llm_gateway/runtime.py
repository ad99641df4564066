"""The per-process objects every request shares: store, catalog, key cache, gate, providers.

Built once per process (one Lambda container, one uvicorn worker) on first use and reused, so warm
requests pay for no client or connection set-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


# A group of writes that finds the database locked by another process retries on the loop this
# often, this many times (another worker's group holds the lock for a fraction of a millisecond),
# then waits on a thread. Not less than a millisecond: uvloop's timers count whole milliseconds, so
# a shorter delay is the loop's next turn, and ten of those pass in tens of microseconds, before the
# other worker's commit ends; the group then went to a thread and paid the GIL hand-offs that the
# loop saves. Writes queued meanwhile join the group.
LOCK_RETRY_S = 0.001
LOCK_RETRIES = 10


class Blocking:
    """Runs the store's blocking calls off the event loop, on a pool of this process's threads.

    Under `serve` one worker carries thousands of streams on one loop: a store call made on the loop
    (a SQLite lock wait, a DynamoDB round trip, a settlement's retry sleep) would stall every one of
    them. A Lambda container serves one request at a time, so there the calls run inline and save the
    thread hop (`threads=0`).
    """

    def __init__(self, threads: int, attempt: Callable[..., Any] | None = None,
                 group: Callable[..., list[tuple[str, Any]]] | None = None) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store") if threads > 0 else None
        # A store that can tell a call that would wait (SQLite's lock) runs the others right here:
        # handing a 50 µs call to a thread costs several times that in GIL hand-offs.
        self._attempt = attempt
        # A store that can commit several calls at once (SQLite) gets the writes of one turn of the
        # loop together (`finish`): one commit for the admissions and settlements that arrive together.
        self._group = group if attempt is not None else None
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._retries = 0  # of the queued writes, on the loop, while the lock is taken
        # Requests this process is serving (GatewayMiddleware counts them): a write made while no
        # other request is in flight has nobody to share a commit with and is done at once.
        self.in_flight = 0

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
        settle is released). On a store with group commit, while other requests are in flight, the
        call waits for the end of this turn of the loop and commits with the other writes made in it
        (admissions and settlements)."""
        if self._pool is None:
            return fn(*args, **kwargs)
        if self._group is not None and (self.in_flight > 1 or self._queued):
            loop = asyncio.get_running_loop()
            done: asyncio.Future[T] = loop.create_future()
            if not self._queued:  # the first of this turn: commit them all once the turn's callbacks ran
                loop.call_soon(self._commit_queued)
            self._queued.append((partial(fn, *args, **kwargs), done))
        else:
            if self._attempt is not None:
                try:
                    return self._attempt(fn, *args, **kwargs)
                except WouldWait:
                    pass
            done = asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if undo is not None:
                pool = self._pool
                done.add_done_callback(lambda d: d.exception() is None and pool.submit(undo, d.result()))
            raise

    def _commit_queued(self) -> None:
        """The writes queued in this turn of the loop, in one store transaction (one call alone: here
        unless it would wait). A group that finds the lock taken is tried again on the loop shortly
        (LOCK_RETRY_S, at most LOCK_RETRIES times, joined by the writes queued meanwhile), then goes
        to a thread whole to wait for it there; what still cannot be done goes to threads one call
        at a time."""
        queued, self._queued = self._queued, []
        assert self._group is not None and self._attempt is not None and self._pool is not None
        calls = [call for call, _ in queued]
        try:
            if len(queued) == 1:
                try:
                    outcomes = [("ok", self._attempt(calls[0]))]
                except Exception as exc:  # noqa: BLE001 - delivered to the caller
                    outcomes = [("error", exc)]
            else:
                outcomes = self._group(calls)
        except WouldWait:
            if self._retries < LOCK_RETRIES:
                # another worker holds the database for a moment: try again on the loop shortly,
                # with the writes queued meanwhile (a hand-off to a thread costs more)
                self._retries += 1
                self._queued[:0] = queued
                asyncio.get_running_loop().call_later(LOCK_RETRY_S, self._commit_queued)
                return
            self._retries = 0
            waited = asyncio.wrap_future(self._pool.submit(self._group, calls, wait=True))
            waited.add_done_callback(lambda done: self._deliver_all(queued, done))
            return
        except Exception:  # noqa: BLE001 - the commit failed: nothing was done
            outcomes = [("again", None)] * len(queued)
        self._retries = 0
        self._deliver(queued, outcomes)

    def _deliver_all(self, queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]],
                     waited: asyncio.Future[list[tuple[str, Any]]]) -> None:
        failed = waited.cancelled() or waited.exception() is not None
        self._deliver(queued, [("again", None)] * len(queued) if failed else waited.result())

    def _deliver(self, queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]],
                 outcomes: list[tuple[str, Any]]) -> None:
        """Each caller its outcome; a call to be done again, on a thread of its own."""
        assert self._pool is not None
        for (call, done), (outcome, value) in zip(queued, outcomes, strict=True):
            if outcome == "ok":
                done.set_result(value)
            elif outcome == "error":
                done.set_exception(value)
            else:
                asyncio.wrap_future(self._pool.submit(call)).add_done_callback(partial(_deliver, done))

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _deliver(done: asyncio.Future[Any], source: asyncio.Future[Any]) -> None:
    """Give `done` the outcome of `source`."""
    if source.cancelled():
        done.cancel()
    elif source.exception() is not None:
        done.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        done.set_result(source.result())


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
            blocking=Blocking(default_store_threads(), getattr(store, "attempt", None), getattr(store, "group", None)),
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
