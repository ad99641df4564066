"""Thousands of long streams through one gateway: the load a chat gateway really carries.

A minimal upstream (its own process, raw asyncio) answers every streaming chat request with one chunk
every `--interval` seconds for `--seconds` seconds, each chunk carrying its index, then usage and
`[DONE]`. The gateway runs as `llm-gateway serve` (SQLite, `--workers N`); the load generator opens
`--streams` client streams, ramped over `--ramp` seconds, and reads them all to the end. Reported:

- completion: streams that ended with every chunk in order and `[DONE]`, errors;
- added time to first byte: through the gateway, less the upstream's own (the same request sent
  directly, as many times), p50 and p99;
- the gateway's RSS growth per open stream (RSS at full concurrency less RSS before, over streams);
- the gateway's CPU per relayed chunk (its processes' CPU time over the run, over the chunks), and
  the CPU the load generator and the upstream used beside it (all three share the machine's cores);
- settlement: one usage record per stream, and the balance moved by exactly their costs.

Bounded in time (`DEADLINE_S`), loopback only.

    python bench/long_streams.py [--streams 2000] [--workers 1] [--seconds 30] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "gateway"))

from bench._loadgen import pct  # noqa: E402
from bench.overhead import UPSTREAM_KEY, _wait_http, stop  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402

DEADLINE_S = 240.0
MODEL = "gpt-4o-mini"
WARM = 8  # short streams before the measured ones

UPSTREAM = r'''
import asyncio, json, sys, time
port, interval, count = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
streams = []  # [writer, next index]

def frame(data):
    return b"%x\r\n%s\r\n" % (len(data), data)

def event(payload):
    return frame(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")

def piece(i):
    return event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "delta": {"content": f"c{i} "}, "finish_reason": None}]})

def end(n):
    return event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}}) \
        + frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"

PIECES = [piece(i) for i in range(count)]

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + PIECES[0])
            if b"warm up" in body:  # one chunk, then the end
                writer.write(end(1))
                continue
            done = asyncio.get_running_loop().create_future()
            streams.append([writer, 1, done])
            await done
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def tick():
    while True:
        await asyncio.sleep(interval)
        alive = []
        for entry in streams:
            writer, i, done = entry
            if writer.is_closing():
                done.set_result(None)
                continue
            if i < count:
                writer.write(PIECES[i])
                entry[1] = i + 1
                alive.append(entry)
            else:
                writer.write(end(count))
                done.set_result(None)
        streams[:] = alive

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=8192)
    print("ready", flush=True)
    asyncio.get_running_loop().create_task(tick())
    await server.serve_forever()

import uvloop
uvloop.run(main())
'''

INDEX = re.compile(rb'"content":"c(\d+) "')


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes."""
    user = system = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11]) / os.sysconf("SC_CLK_TCK")
        system += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return user, system


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def gateway_pids(parent: int) -> list[int]:
    """The server process and its workers (with --workers N the parent only supervises)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return [parent, *children]


class _StreamClient(asyncio.Protocol):
    """One client stream, read as it arrives with as little work per chunk as the check needs: the
    load generator shares the two cores with the gateway it measures. The raw bytes are scanned for
    the chunk indices between event boundaries (the chunked framing never splits the pattern, since
    boundaries are found first); the end is the last chunk of the chunked body."""

    def __init__(self, request: bytes, expected: int, started: float, done: asyncio.Future) -> None:
        self.request, self.expected, self.started, self.done = request, expected, started, done
        self.buffer = b""
        self.status = 0
        self.sent = self.first = None
        self.seen, self.in_order, self.saw_done = -1, True, False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.sent = time.perf_counter()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.status:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                self.buffer = buffer
                return
            self.status = int(buffer[9:12])
            if self.status != 200:  # a refusal: counted as an error, its body not awaited
                self._finish()
                return
            buffer = buffer[head_end + 4:]
        if self.first is None and buffer:
            self.first = time.perf_counter() - self.sent
        cut = buffer.rfind(b"\n\n")
        if cut >= 0:
            events, buffer = buffer[:cut], buffer[cut + 2:]
            for match in INDEX.finditer(events):
                index = int(match.group(1))
                self.in_order &= index == self.seen + 1
                self.seen = index
            self.saw_done |= b"data: [DONE]" in events
        self.buffer = buffer
        if buffer.endswith(b"0\r\n\r\n") and self.saw_done:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.done.done():
            return
        self.transport.close()
        ok = self.status == 200 and self.in_order and self.saw_done and self.seen + 1 == self.expected
        self.done.set_result({"status": self.status, "ttfb": self.first, "chunks": self.seen + 1, "ok": ok,
                              "end": time.perf_counter() - self.started})


async def one_stream(port: int, headers: str, body: bytes, expected: int, started: float) -> dict:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               f"Content-Type: application/json\r\n{headers}\r\n").encode() + body
    try:
        await loop.create_connection(lambda: _StreamClient(request, expected, started, done), "127.0.0.1", port)
    except OSError as exc:
        return {"status": 0, "ttfb": None, "chunks": 0, "ok": False, "error": type(exc).__name__}
    return await done


async def ttfb_direct(port: int, body: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        r = await one_stream_head(port, body)
        out.append(r)
    return out


async def one_stream_head(port: int, body: bytes) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = time.perf_counter()
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                 f"Authorization: Bearer {UPSTREAM_KEY}\r\n\r\n".encode() + body)
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b"\r\n")
    first = time.perf_counter() - sent
    writer.close()
    return first


async def run(args: argparse.Namespace) -> dict:
    expected = int(round(args.seconds / args.interval))
    up_port, gw_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port), str(args.interval), str(expected)],
                                stdout=subprocess.PIPE, text=True)
    upstream.stdout.readline()
    work = tempfile.mkdtemp()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GATEWAY_"))}
    env.update({"PYTHONPATH": str(ROOT / "layers" / "gateway"), "GATEWAY_STORE_URL": f"sqlite:///{work}/gw.db",
                "OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
                "GATEWAY_LOG_LEVEL": "WARNING", "TIKTOKEN_CACHE_DIR": str(ROOT / "layers" / "tiktoken")})
    cli = [sys.executable, "-m", "llm_gateway.cli"]
    gateway = subprocess.Popen([*cli, "serve", "--port", str(gw_port), "--workers", str(args.workers)], env=env,
                               cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    key = json.loads(gateway.stdout.readline())["admin_key"]
    subprocess.run([*cli, "users", "topup", "admin", "100000"], env=env, cwd=work, check=True, capture_output=True)
    subprocess.run([*cli, "models", "set", MODEL, "--rpm", "regular=10000000", "vip=10000000", "premium=10000000"],
                   env=env, cwd=work, check=True, capture_output=True)
    try:
        _wait_http(gw_port, gateway)
        body = json.dumps({"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "Tell me a long story."}]}).encode()
        headers = f"Authorization: Bearer {key}\r\n"
        direct = await ttfb_direct(up_port, body, 50)
        # warm the gateway (imports, connections, tokenizer) with a few short-lived streams
        warm = body.replace(b"Tell me a long story.", b"warm up")
        await asyncio.gather(*[one_stream(gw_port, headers, warm, 1, time.perf_counter()) for _ in range(WARM)])
        time.sleep(1.0)
        pids = gateway_pids(gateway.pid)
        rss_before, cpu_before = rss_mb(pids), cpu_seconds(pids)
        others_before = sum(cpu_seconds([os.getpid(), upstream.pid]))
        started = time.perf_counter()
        peak = {"rss": rss_before, "open": 0}
        tasks = []

        async def sample():
            while True:
                await asyncio.sleep(0.5)
                open_now = sum(1 for t in tasks if not t.done())
                rss = rss_mb(pids)
                if open_now >= peak["open"]:
                    peak.update(rss=max(peak["rss"], rss) if open_now == peak["open"] else rss, open=open_now)

        sampler = asyncio.create_task(sample())
        gap = args.ramp / args.streams
        for i in range(args.streams):
            tasks.append(asyncio.create_task(one_stream(gw_port, headers, body, expected, started)))
            delay = started + (i + 1) * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        results = await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
        elapsed = time.perf_counter() - started
        others = sum(cpu_seconds([os.getpid(), upstream.pid])) - others_before
        sampler.cancel()
        user_s, system_s = (after - before for after, before in zip(cpu_seconds(pids), cpu_before, strict=True))
        cpu = user_s + system_s
        # the settlements: every stream once (read the store the server wrote)
        time.sleep(1.0)
        from llm_gateway.store import open_store

        store = open_store(f"sqlite:///{work}/gw.db")
        records, cursor = [], None
        while True:
            page = store.list_usage("admin", limit=1000, cursor=cursor)
            records += page.records
            cursor = page.next_cursor
            if not cursor:
                break
        user = store.get_user("admin")
    finally:
        stop(gateway)
        stop(upstream)
    ok = [r for r in results if r["ok"]]
    ttfbs = [r["ttfb"] for r in results if r["ttfb"] is not None]
    direct_p50 = pct(direct, 50)
    chunks = sum(r["chunks"] for r in results)
    return {
        "streams": args.streams,
        "workers": args.workers,
        "chunks_per_stream": expected,
        "interval_s": args.interval,
        "ramp_s": args.ramp,
        "seconds": round(elapsed, 1),
        "complete_in_order": len(ok),
        "errors": len(results) - len(ok),
        "statuses": sorted({r["status"] for r in results}),
        "ttfb_direct_ms": {"p50": round(direct_p50 * 1000, 2), "p99": round(pct(direct, 99) * 1000, 2)},
        "ttfb_gateway_ms": {"p50": round(pct(ttfbs, 50) * 1000, 2), "p99": round(pct(ttfbs, 99) * 1000, 2)},
        "added_ttfb_ms": {"p50": round((pct(ttfbs, 50) - direct_p50) * 1000, 2),
                          "p99": round((pct(ttfbs, 99) - direct_p50) * 1000, 2)},
        "open_streams_at_peak": peak["open"],
        "rss_before_mb": round(rss_before, 1),
        "rss_at_peak_mb": round(peak["rss"], 1),
        "rss_growth_kb_per_open_stream": round((peak["rss"] - rss_before) * 1024 / max(1, peak["open"]), 1),
        "chunks_relayed": chunks,
        "gateway_cpu_s": round(cpu, 2),
        # the rest of the machine's work: the load generator and the upstream, on the same cores
        "load_generator_and_upstream_cpu_s": round(others, 2),
        "cores_busy": round((cpu + others) / elapsed, 2),
        "cpu_us_per_chunk": round(cpu / max(1, chunks) * 1e6, 1),
        # system time is mostly loopback TCP: the sender's write does the receiver's TCP work too
        "cpu_us_per_chunk_user_system": [round(user_s / max(1, chunks) * 1e6, 1),
                                         round(system_s / max(1, chunks) * 1e6, 1)],
        "usage_records": len(records),
        "settled_once_each": len(records) == len({r.request_id for r in records}) == len(ok) + WARM,
        "balance_matches_records": user.balance == 100000 * 1_000_000 - sum(r.cost for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--ramp", type=float, default=10.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.streams + 1024)), hard))
    import uvloop  # the gateway's own loop: the load generator's share of the cores is smaller

    print(json.dumps(uvloop.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
