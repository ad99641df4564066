"""The floor under the throughput target: the simplest Python relay, measured in the same run.

bench/overhead.py compares the gateway's added latency and requests/s with the fake upstream's own.
Both are bounded by what any Python relay on this stack can do, however little it does, so this
module measures that bound next to the gateway: a bare ASGI app under the same server settings as
`llm-gateway serve` (uvicorn, its httptools protocol as serve runs it, uvloop, one process) that reads the request, forwards its
body to the upstream through one aiohttp session and returns the upstream's answer. No framework,
no validation, no key lookup, no token count, no log line. Two variants:

- `relay`: forwarding only;
- `relay_sqlite`: forwarding plus the SQLite store's own `admit` and `settle`, the two write
  transactions every charged request needs (API.md section 4), on a store like the gateway's.

Run as a server by bench/overhead.py: `python -m bench.relay_floor UPSTREAM_PORT PORT [--sqlite DIR]`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "gateway"))  # the package its SQLite variant and server use
VARIANTS = ("relay", "relay_sqlite")


def _store(directory: str) -> Callable[[str], Callable[[], None]]:
    """`begin(request_id)` admits one request on a real SQLite store and returns its `settle`."""
    from llm_gateway.store.base import Counter, Key, UsageRecord, User
    from llm_gateway.store.sqlite import SQLiteStore

    store = SQLiteStore(f"{directory}/relay.db")
    store.init()
    now = time.time()
    store.create_user(User(user_id="u", tier="regular", balance=10**15, membership_expire_at=None, created_at=now))
    store.create_key(Key(key_id="k", key_hash="h", user_id="u", key_hint="sk-...", created_at=now))
    counters = [Counter("model:u", 10**9), Counter("key:k", 10**9)]

    def begin(request_id: str) -> Callable[[], None]:
        store.admit("u", "k", counters, 1000, time.time())
        return lambda: store.settle(UsageRecord(
            request_id=request_id, user_id="u", key_id="k", model="m", created_at=time.time(),
            input_tokens=10, output_tokens=10, cost=100, reserved=1000,
        ))

    return begin


def relay_app(upstream_port: int, begin: Callable[[str], Callable[[], None]] | None) -> Callable[..., Awaitable[None]]:
    import aiohttp

    from llm_gateway.http.middleware import new_request_id  # ids as the gateway makes them (time first)

    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    session: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["method"] == "GET":  # the benchmark's readiness probe
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if not session:
            session.append(aiohttp.ClientSession())
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = dict(scope["headers"])
        settle = begin(new_request_id()) if begin else None
        async with session[0].post(url, data=body, headers={
            "authorization": headers[b"authorization"].decode(), "content-type": "application/json",
        }) as upstream:
            answer, status = await upstream.read(), upstream.status
        if settle:
            settle()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode()),
        ]})
        await send({"type": "http.response.body", "body": answer})

    return app


def start(variant: str, upstream_port: int, port: int, workdir: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "bench.relay_floor", str(upstream_port), str(port)]
    if variant == "relay_sqlite":
        args += ["--sqlite", workdir]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    import uvicorn

    from llm_gateway.http.protocol import Protocol

    upstream_port, port = int(sys.argv[1]), int(sys.argv[2])
    begin = _store(sys.argv[4]) if sys.argv[3:4] == ["--sqlite"] else None
    uvicorn.run(relay_app(upstream_port, begin), host="127.0.0.1", port=port, log_level="error",
                access_log=False, loop="uvloop", http=Protocol, lifespan="off")


if __name__ == "__main__":
    main()
