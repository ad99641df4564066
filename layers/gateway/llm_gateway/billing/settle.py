"""Settlement: turn an admitted ticket and the usage that came back into a charge, exactly once."""

from __future__ import annotations

import logging
import time

from .. import logs
from ..store.base import Store, UsageRecord, WouldWait, waiting_allowed
from .cost import Unpriced, cost_micros
from .reservation import Ticket
from .retry import Parking
from .usage import Usage

_ATTEMPTS = 3


def settle(store: Store, ticket: Ticket, usage: Usage | None, status: str = "ok") -> UsageRecord | None:
    """Charge `usage` (None: nothing was produced) against the ticket's reservation: `charge`, then
    `write` (a blocking call: run it off the event loop).

    Safe to call more than once: the first call settles, later ones do nothing, both in this process
    (the ticket's flag) and in the store (the request id is the usage record's unique key).
    """
    record = charge(ticket, usage, status)
    return write(store, record) if record is not None else None


def charge(ticket: Ticket, usage: Usage | None, status: str = "ok") -> UsageRecord | None:
    """The usage record that settles `ticket` (None if it is settled already). Marks it settled, so
    the caller decides exactly once, before any blocking write, which outcome is charged."""
    if ticket.settled:
        return None
    ticket.settled = True
    usage = usage or Usage()
    if not usage.metered and status != "ok":
        cost = 0  # a failed call that produced nothing costs nothing, not even its per-request price
    else:
        try:
            cost = cost_micros(ticket.prices, usage, ticket.multiplier)
        except Unpriced:
            # Admission priced this request; a unit the upstream added after it (another image size)
            # has no price of its own, so the request costs what was reserved for it.
            logs.log("unpriced usage charged at its reservation", level=logging.WARNING,
                     request_id=ticket.request_id, model=ticket.model, units=usage.units())
            cost = ticket.reserved
    return UsageRecord(
        request_id=ticket.request_id,
        user_id=ticket.user_id,
        key_id=ticket.key_id,
        model=ticket.model,
        route=ticket.route,
        created_at=time.time(),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        units=usage.units(),
        cost=cost,
        reserved=ticket.reserved,
        latency_ms=max(0, int((time.time() - ticket.created_at) * 1000)),
        status=status,
        channel=ticket.channel,
        attempts=ticket.attempts,
    )


def refund(ticket: Ticket, usage: Usage, status: str = "refunded") -> UsageRecord:
    """The record that gives back what `ticket` was charged for `usage` (an asynchronous task that
    failed after it was charged on acceptance): the same cost, negative, under a request id of its
    own, so the store's request-id guard applies it exactly once too."""
    cost = cost_micros(ticket.prices, usage, ticket.multiplier)
    return UsageRecord(
        request_id=f"{ticket.request_id}-refund",
        user_id=ticket.user_id,
        key_id=ticket.key_id,
        model=ticket.model,
        route=ticket.route,
        created_at=time.time(),
        units=usage.units(),
        cost=-cost,
        reserved=0,
        status=status,
        channel=ticket.channel,
        attempts=ticket.attempts,
    )


def write(store: Store, record: UsageRecord, parking: Parking | None = None) -> UsageRecord:
    """Write a settlement, retried: the record's request id makes a repeat harmless. Blocking (its
    retries sleep), so async callers run it on a thread; run through a store's `attempt`, a failed
    first try raises WouldWait instead of sleeping, and the retries happen on a thread. A settlement
    still failing is parked (billing.retry), to be applied later, exactly once."""
    for attempt in range(_ATTEMPTS):
        try:
            store.settle(record)  # idempotent per request id, so a retry after a lost reply is safe
            return record
        except Exception:  # noqa: BLE001 - the answer was produced; the charge must not vanish silently
            if attempt + 1 < _ATTEMPTS:
                if not waiting_allowed(store):
                    raise WouldWait from None
                time.sleep(0.05 * (attempt + 1))
                continue
            (parking or Parking(store)).put(record)  # the client has its answer: keep what it owes
    return record
