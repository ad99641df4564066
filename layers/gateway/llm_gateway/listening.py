"""The listening sockets of `serve`.

`serve` binds its port before anything else (a port in use fails before the store is touched), and
its workers serve that socket. On one socket shared by several workers, the worker that wakes first
accepts every connection waiting: of 16 connections opened together, all 16 went to one worker in
most trials, so a client pool that opens its connections at once could leave the other workers
idle. So with several workers each also listens on a socket of its own on the same port
(SO_REUSEPORT), made in the worker itself, and the kernel spreads new connections over the
listening sockets by their addresses. The shared socket stays: connections made before the workers
are up wait in its queue for whichever worker comes first, and afterwards it carries its share
(1 in workers + 1) like any other. A worker that dies takes its own socket with it, and the kernel
spreads over the others.
"""

from __future__ import annotations

import socket
from typing import Any

BACKLOG = 2048


def _bound(host: str, port: int, *, reuse_port: bool, listening: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listening:
            sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _spreads(workers: int) -> bool:
    return workers > 1 and hasattr(socket, "SO_REUSEPORT")


def listen(host: str, port: int, workers: int = 1) -> socket.socket:
    """The socket `serve` binds first, listening. For several workers it is open to their own
    sockets on the same port; a plain bind is tried first, so that a port already taken (even by
    another server that shares its port this way) fails here as it would without workers."""
    spread = _spreads(workers)
    if spread:
        _bound(host, port, reuse_port=False, listening=False).close()
    sock = _bound(host, port, reuse_port=spread)
    sock.set_inheritable(True)  # workers receive it
    return sock


def _own_socket(host: str, port: int) -> socket.socket:
    return _bound(host, port, reuse_port=True)


class OwnSocket:
    """Stands in a worker's list of sockets for one it makes itself when it starts: the worker
    process receives its sockets pickled, and unpickling this makes a fresh listening socket there."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, ...]:
        return (_own_socket, (self.host, self.port))


def worker_sockets(shared: socket.socket, host: str, port: int, workers: int) -> list[Any]:
    """What each worker serves: the shared socket, and with several workers, one of its own."""
    return [shared, OwnSocket(host, port)] if _spreads(workers) else [shared]
