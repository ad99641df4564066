"""Settlements that could not be written: kept durably and applied later, exactly once.

A settlement is written after the upstream answered, so the client has what it paid for: dropping it
would lose the charge and leave the reservation held for ever. When its bounded retries fail (the
store throttled, locked or down), `Parking.put` hands the usage record to a durable place:

- on AWS with `GATEWAY_SETTLEMENT_QUEUE_URL`, an SQS queue; the settlement function
  (functions/settlement) applies each message, SQS redelivers a failed one, and after
  `maxReceiveCount` tries it lands in the dead-letter queue, which raises an alarm;
- otherwise the store itself (`park_settlement`), drained by `drain`: `serve` runs it every few
  seconds, the settlement function on a schedule.

Exactly once: `Store.settle` is guarded by the request id, so a record applied twice (a reply lost
after a commit, a message delivered twice) changes nothing the second time. A record nothing can take
(the queue and the store both failing) stays in this process's memory for the next drain and is
logged with what to reconcile (ids and counts, never a key or a prompt), which the
settlement-failure alarm counts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from .. import logs
from ..store.base import Store, UsageRecord

__all__ = ["Parking", "drain", "housekeeping", "lambda_handler"]

# a settlement nothing durable accepted, kept for the next drain of this process
_held: dict[str, UsageRecord] = {}
_held_lock = threading.Lock()


class Parking:
    """Where a settlement that could not be written goes: an SQS queue, else the store."""

    def __init__(self, store: Store, queue_url: str | None = None, sqs: Any = None) -> None:
        self.store = store
        self.queue_url = queue_url
        self._sqs = sqs

    def put(self, record: UsageRecord) -> None:
        """Keep `record` in the first place that takes it: the queue, the store, this process."""
        places = [("queue", self._send)] if self.queue_url else []
        for place, keep in (*places, ("store", self.store.park_settlement)):
            try:
                keep(record)
            except Exception:  # noqa: BLE001 - try the next place
                logs.log("settlement not parked", level=logging.WARNING, exc_info=True,
                         request_id=record.request_id, to=place)
                continue
            logs.log("settlement parked", level=logging.WARNING, request_id=record.request_id, to=place)
            return
        with _held_lock:  # the last resort: memory, and the line the settlement-failure alarm counts
            _held[record.request_id] = record
        logs.log("settlement failed", level=logging.ERROR, **record.as_dict())

    def _send(self, record: UsageRecord) -> None:
        self._queue().send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(record.as_dict()))

    def _queue(self) -> Any:
        if self._sqs is None:
            from ..awsclients import client

            self._sqs = client("sqs")
        return self._sqs


def drain(store: Store, limit: int = 100) -> int:
    """Apply what waits in this process's memory and in the store; the number settled. A record
    that fails again stays parked for the next drain."""
    done = 0
    with _held_lock:
        held = list(_held.values())
    for record in held:
        try:
            store.settle(record)  # False: settled already, by a try whose reply was lost
        except Exception:  # noqa: BLE001 - still failing: kept for the next drain
            continue
        with _held_lock:
            _held.pop(record.request_id, None)
        done += 1
    try:
        parked = store.parked_settlements(limit)
    except Exception:  # noqa: BLE001 - the store is still down: try again next time
        return done
    for record in parked:
        try:
            store.settle(record)
            store.unpark_settlement(record.request_id)
        except Exception:  # noqa: BLE001
            continue
        done += 1
    return done


def housekeeping(store: Store, usage_retention_days: float) -> int:
    """One round of the server's housekeeping: drain parked settlements, then prune usage records
    past the retention (a store that keeps them by TTL has no `prune_usage`)."""
    done = drain(store)
    prune = getattr(store, "prune_usage", None)
    if usage_retention_days > 0 and prune is not None:
        prune(time.time() - usage_retention_days * 86_400)
    return done


_worker_store: Store | None = None


def lambda_handler(event: dict[str, Any], context: Any = None, store: Store | None = None) -> dict[str, Any]:
    """The settlement function: an SQS batch (each message one usage record) is settled message by
    message, the failed ones reported back (`batchItemFailures`) so SQS redelivers only those, and
    after the queue's `maxReceiveCount` moves them to the dead-letter queue. Any other event (the
    schedule) drains what was parked in the store."""
    global _worker_store
    if store is None:
        if _worker_store is None:
            from ..config import get_settings
            from ..store import open_store

            settings = get_settings()
            _worker_store = open_store(settings.store_url, settings.usage_retention_days)
        store = _worker_store
    if "Records" not in event:
        return {"settled": drain(store)}
    failures = []
    for message in event["Records"]:
        try:
            store.settle(UsageRecord(**json.loads(message["body"])))
        except Exception:  # noqa: BLE001 - SQS tries this one again
            logs.log("settlement retry failed", level=logging.WARNING, exc_info=True,
                     message_id=message.get("messageId"))
            failures.append({"itemIdentifier": message["messageId"]})
    return {"batchItemFailures": failures}
