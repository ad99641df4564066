"""`serve --workers N` spreads connections over its workers: each worker listens on a socket of its own
on the port (SO_REUSEPORT) besides the shared one, so a burst of connections opened together no
longer lands on whichever worker woke first, and a worker that dies leaves no connection waiting."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.served import gateway_env, serve

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/net/tcp").exists(),
                                reason="Linux: SO_REUSEPORT, and /proc to see which worker holds a connection")

LISTEN, ESTABLISHED = "0A", "01"


def sockets_on(port: int, state: str) -> set[str]:
    """Inodes of this machine's IPv4 TCP sockets on local `port` in `state`."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            found.add(fields[9])
    return found


def held_by(pid: int, inodes: set[str]) -> set[str]:
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held.add(target[8:-1])
    return held


def workers_of(supervisor: int, port: int) -> list[int]:
    """The supervisor's children that listen on the port (not multiprocessing's helpers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor:
                children.append(int(entry.name))
    return [pid for pid in children if held_by(pid, sockets_on(port, LISTEN))]


def wait_for_workers(served, port: int, n: int) -> list[int]:
    deadline = time.monotonic() + 30
    while True:
        workers = workers_of(served.proc.pid, port)
        if len(workers) == n and len(sockets_on(port, LISTEN)) == n + 1:
            return workers
        assert time.monotonic() < deadline, (workers, sockets_on(port, LISTEN))
        time.sleep(0.1)


@pytest.fixture
def two_workers(tmp_path):
    served = serve(tmp_path, gateway_env(tmp_path), workers=2)
    port = int(served.url.rsplit(":", 1)[1])
    try:
        yield served, port, wait_for_workers(served, port, 2)
    finally:
        served.stop()


def test_each_worker_listens_on_a_socket_of_its_own_besides_the_shared_one(two_workers):
    served, port, workers = two_workers
    listening = sockets_on(port, LISTEN)
    shared = held_by(served.proc.pid, listening)
    assert len(shared) == 1
    own = [held_by(pid, listening) - shared for pid in workers]
    assert [len(s) for s in own] == [1, 1] and own[0] != own[1]
    assert all(shared <= held_by(pid, listening) for pid in workers)


def test_connections_opened_together_spread_over_the_workers(two_workers):
    served, port, workers = two_workers
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        deadline = time.monotonic() + 10
        while True:  # until every connection is accepted
            counts = [len(held_by(pid, sockets_on(port, ESTABLISHED))) for pid in workers]
            if sum(counts) == len(clients) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()
    assert sum(counts) == 200
    # Two thirds arrive on the workers' own sockets, split evenly by the kernel: each worker holds
    # ~67 of those alone (fewer than 40 is over 4 standard deviations away). On one shared socket,
    # 16 connections opened together went all to one worker in most trials.
    assert min(counts) >= 40, counts


def test_a_worker_that_dies_leaves_no_new_connection_unserved(two_workers):
    served, port, workers = two_workers
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while held_by(workers[1], sockets_on(port, LISTEN)) != sockets_on(port, LISTEN):
        assert time.monotonic() < deadline  # the dead worker's own socket is gone with it
        time.sleep(0.02)
    for _ in range(40):  # each on a new connection, hashed over the sockets that remain
        assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
    assert len(wait_for_workers(served, port, 2)) == 2  # and the supervisor replaces it
