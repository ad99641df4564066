"""Webhooks: a task's Task JSON POSTed to its `webhook` on every status or progress change, in order
per task, retried with backoff (at most `TRIES` tries within about a minute), never inside the
request that caused the change. Locally a worker per task in the server process drains that task's
queue one delivery at a time.

Only http(s) URLs whose host is not a loopback, link-local or private address are accepted (the
host is checked at submission and its addresses again before each delivery, so a name cannot be
pointed inside later), unless `GATEWAY_WEBHOOK_ALLOW_PRIVATE=1`.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
