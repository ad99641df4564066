"""Webhooks: a task's Task JSON POSTed to its `webhook` on every status or progress change, in order
per task, retried with backoff (at most `TRIES` tries within about a minute), never inside the
request that caused the change. Locally a worker per task in the server process drains that task's
queue one delivery at a time. On AWS (`GATEWAY_WEBHOOK_QUEUE_URL`) the tasks function puts each
delivery on an SQS FIFO queue, grouped by task so SQS hands a task's deliveries over in order, and
the webhook function (`lambda_handler`) delivers them with the same tries and backoff.

Only http(s) URLs whose host is not a loopback, link-local or private address are accepted (the
host is checked at submission and its addresses again before each delivery, so a name cannot be
pointed inside later), unless `GATEWAY_WEBHOOK_ALLOW_PRIVATE=1`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import logs
from ..errors import invalid

TRIES = 5
BACKOFF = 2.0  # seconds before the second try, doubled each time: 2 + 4 + 8 + 16 = 30 s of waits
TIMEOUT = 10.0


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved \
        or ip.is_unspecified


def check_url(url: str, allow_private: bool) -> str:
    """The webhook as given, or a 400 naming `webhook`: not http(s), or a private host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("Invalid value for 'webhook': expected an http(s) URL.", "webhook")
    if allow_private:
        return url
    host = parts.hostname
    try:
        private = _private(host)
    except ValueError:
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if private:
        raise invalid("Invalid value for 'webhook': its host is a loopback, link-local or private address.",
                      "webhook")
    return url


async def _resolves_public(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return not _private(host)
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and not any(_private(str(info[4][0])) for info in infos)


class Webhooks:
    """This process's deliveries: one queue and one worker per task with deliveries pending."""

    def __init__(self, *, allow_private: bool = False, backoff: float = BACKOFF, tries: int = TRIES) -> None:
        self.allow_private = allow_private
        self.backoff = backoff
        self.tries = tries
        self._queues: dict[int, asyncio.Queue[tuple[str, dict[str, Any]]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def send(self, task_id: int, url: str, payload: dict[str, Any]) -> None:
        """Queue a delivery (call on the event loop); it goes after the task's earlier ones."""
        queue = self._queues.get(task_id)
        if queue is None:
            queue = self._queues[task_id] = asyncio.Queue()
            worker = asyncio.get_running_loop().create_task(self._drain(task_id, queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.put_nowait((url, payload))

    async def _drain(self, task_id: int, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        try:
            while not queue.empty():
                url, payload = queue.get_nowait()
                await self._deliver(task_id, url, payload)
        finally:
            self._queues.pop(task_id, None)

    async def _deliver(self, task_id: int, url: str, payload: dict[str, Any]) -> bool:
        if not self.allow_private and not await _resolves_public(url):
            logs.log("webhook refused: private address", level=logging.WARNING, task_id=task_id)
            return False
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        for attempt in range(self.tries):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                answer = await self._client.post(url, json=payload, headers={"user-agent": "llm-gateway"})
                if answer.status_code < 300:
                    return True
            except httpx.HTTPError:
                pass
        logs.log("webhook undelivered", level=logging.WARNING, task_id=task_id, status=payload.get("status"),
                 tries=self.tries)
        return False

    async def aclose(self) -> None:
        for worker in list(self._workers):
            worker.cancel()
        if self._client is not None:
            await self._client.aclose()


class QueuedWebhooks:
    """Deliveries handed to an SQS FIFO queue (on AWS), one message group per task. The message is
    sent inline, a blocking call: a Lambda container serves one request at a time. A send that
    fails is logged and dropped, as an undelivered webhook is: the task itself is in the store."""

    def __init__(self, queue_url: str, *, allow_private: bool = False, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self.allow_private = allow_private
        self._sqs = sqs

    def send(self, task_id: int, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps({"task_id": task_id, "url": url, "payload": payload}, sort_keys=True)
        try:
            if self._sqs is None:
                from ..awsclients import client

                self._sqs = client("sqs")
            # the same delivery queued twice within SQS's 5 minutes (a repeated write) is sent once
            self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=body, MessageGroupId=str(task_id),
                                   MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest())
        except Exception:  # noqa: BLE001 - a webhook is a notification; the task is stored
            logs.log("webhook not queued", level=logging.WARNING, exc_info=True, task_id=task_id)

    async def aclose(self) -> None:
        return None


# the webhook function's worker and event loop, kept warm across invocations (its HTTP client too)
_worker: Webhooks | None = None
_loop: asyncio.AbstractEventLoop | None = None


def lambda_handler(event: dict[str, Any], context: Any = None, webhooks: Webhooks | None = None) -> dict[str, Any]:
    """The webhook function: a batch of the FIFO queue's messages, each one delivery. A task's
    deliveries go one after another in the batch's order, different tasks' at once, each with
    `Webhooks`' tries and backoff; one still undelivered after them is logged and dropped, as under
    `serve`. A message that could not be handled (a malformed body, the function failing) is
    reported with every later one of its task, so SQS hands them over again in order, and after
    the queue's maxReceiveCount they go to its dead-letter queue."""
    global _worker, _loop
    if webhooks is None:
        if _worker is None:
            from ..config import get_settings

            _worker = Webhooks(allow_private=get_settings().secret("GATEWAY_WEBHOOK_ALLOW_PRIVATE") == "1")
        webhooks = _worker
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(_deliver_batch(webhooks, event.get("Records", [])))


async def _deliver_batch(webhooks: Webhooks, records: list[dict[str, Any]]) -> dict[str, Any]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        group = (record.get("attributes") or {}).get("MessageGroupId") or record["messageId"]
        by_task.setdefault(group, []).append(record)
    failures: list[dict[str, str]] = []

    async def deliver_in_order(messages: list[dict[str, Any]]) -> None:
        for at, message in enumerate(messages):
            try:
                body = json.loads(message["body"])
                await webhooks._deliver(int(body["task_id"]), str(body["url"]), body["payload"])
            except Exception:  # noqa: BLE001 - this one and its task's later ones come back
                logs.log("webhook delivery failed", level=logging.WARNING, exc_info=True,
                         message_id=message.get("messageId"))
                failures.extend({"itemIdentifier": m["messageId"]} for m in messages[at:])
                return

    await asyncio.gather(*(deliver_in_order(messages) for messages in by_task.values()))
    return {"batchItemFailures": failures}
