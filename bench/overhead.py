"""Gateway overhead: the same requests sent directly to a fake upstream and through the gateway.

Starts a fake OpenAI upstream and `llm-gateway serve` (SQLite store, one worker) on 127.0.0.1,
then measures, for non-streaming and streaming chat requests:
- sequential added latency (p50/p99 of gateway latency minus the direct latency, request by request),
- requests per second at concurrency 16, through the gateway and directly,
- the gateway's RSS at rest with both tokenizer encodings loaded, and its peak under the load.
Prints one JSON object. Bounded: a fixed number of requests, and a time cap per phase.

Targets (2 cores shared by load generator, upstream and gateway): added p50 ≤ 0.5 ms and p99 ≤ 2 ms
sequential; RSS at rest with both encodings loaded ≤ 150 MB.
Next to the gateway it measures bench/relay_floor.py's bare relays (no framework, no checks; with and
without the SQLite store's two transactions), sequentially as the gateway (what they add to a
request) and under the same concurrent load (their requests/s): what no Python relay on this stack
does better, so the gateway's figures can be read against it in the same run.
It also runs the Claude-through-chat streaming case of bench/claude_translation.py against a fake
Anthropic upstream (translation ≤ 20 µs per chunk, ≤ 1 ms added to the first byte).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "gateway"))

from bench import claude_translation, relay_floor  # noqa: E402
from bench._loadgen import PHASE_CAP_S, Connection, pct  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402

UPSTREAM_KEY = "sk-operator-upstream-credential-0000000000000000"


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("a benchmark server exited early")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("a benchmark server did not start")


def start_upstream(port: int, fake: str = "openai_upstream.FakeOpenAI") -> subprocess.Popen:
    """A fake upstream (a class of tests/fakes, as "module.Class") in its own process."""
    module, cls = fake.split(".")
    code = (
        "import sys, uvicorn; sys.path.insert(0, %r);"
        "from tests.fakes.%s import %s as Fake;"
        "from starlette.routing import Route; from starlette.responses import PlainTextResponse;"
        "fake = Fake(); fake.record = False; app = fake.app();"
        "app.router.routes.append(Route('/healthz', lambda r: PlainTextResponse('ok')));"
        "uvicorn.run(app, host='127.0.0.1', port=%d, log_level='error', access_log=False,"
        " loop='uvloop', http='httptools')"
    ) % (str(ROOT), module, cls, port)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_gateway(
    port: int, upstream_port: int, workdir: str, model: str,
    extra_env: dict[str, str] | None = None, extra_models: tuple[str, ...] = (), workers: int = 1,
) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GATEWAY_"))}
    env.update({
        "PYTHONPATH": str(ROOT / "layers" / "gateway"),
        "GATEWAY_STORE_URL": f"sqlite:///{workdir}/gateway.db",
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        # the default level: one JSON log line per request, as operators run it
        "GATEWAY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        **(extra_env or {}),
    })
    cli = [sys.executable, "-m", "llm_gateway.cli"]
    proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", str(workers)], env=env, cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    banner = json.loads(proc.stdout.readline())
    subprocess.run([*cli, "users", "topup", "admin", "1000"], env=env, cwd=workdir, check=True,
                   capture_output=True)
    # The benchmark measures overhead, not limits: lift the model's rate limit for every tier.
    for name in (model, *extra_models):
        subprocess.run([*cli, "models", "set", name, "--rpm", "regular=10000000", "vip=10000000",
                        "premium=10000000"], env=env, cwd=workdir, check=True, capture_output=True)
    return proc, banner["admin_key"]


def rss_now_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def idle_rss(port: int, headers: dict, model: str, pid: int) -> float:
    """The server's RSS at rest once one OpenAI model (o200k_base) and one Claude model (cl100k_base)
    have been called: both tokenizer encodings loaded, nothing in flight."""
    conn = Connection("127.0.0.1", port)
    for name in (model, claude_translation.CLAUDE_MODEL):
        body = json.dumps({"model": name, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        status, *_ = await conn.post("/v1/chat/completions", body.encode(), headers)
        assert status == 200, status
    conn.close()
    time.sleep(1.0)
    return rss_now_mb(pid)


async def sequential(port_direct: int, port_through: int, key: str, body: bytes, n: int) -> dict:
    """Each request sent directly and then through the server on `port_through` (with `key`): what
    the server adds to each, request by request."""
    direct, through = Connection("127.0.0.1", port_direct), Connection("127.0.0.1", port_through)
    auth_direct = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    auth_through = {"Authorization": f"Bearer {key}"}
    added_total, added_first, d_tot, g_tot = [], [], [], []
    deadline = time.monotonic() + PHASE_CAP_S
    for i in range(n + 20):
        s1, f1, t1, _ = await direct.post("/v1/chat/completions", body, auth_direct)
        s2, f2, t2, _ = await through.post("/v1/chat/completions", body, auth_through)
        assert s1 == 200 and s2 == 200, (s1, s2)
        if i >= 20:  # warm-up
            added_total.append((t2 - t1) * 1000)
            added_first.append((f2 - f1) * 1000)
            d_tot.append(t1 * 1000)
            g_tot.append(t2 * 1000)
        if time.monotonic() > deadline:
            break
    direct.close()
    through.close()
    return {
        "requests": len(added_total),
        "direct_p50_ms": round(statistics.median(d_tot), 3),
        "gateway_p50_ms": round(statistics.median(g_tot), 3),
        "added_p50_ms": round(pct(added_total, 50), 3),
        "added_p99_ms": round(pct(added_total, 99), 3),
        "added_first_byte_p50_ms": round(pct(added_first, 50), 3),
        "added_first_byte_p99_ms": round(pct(added_first, 99), 3),
    }


async def sequential_floor(up_port: int, workdir: str, body: bytes, gateway: dict, n: int) -> dict:
    """What bench/relay_floor.py's bare relays add to a sequential request, measured as the gateway's
    (`gateway`, its sequential result): the part of the gateway's added latency that any Python
    relay on this stack pays, and with the store's two transactions, any relay that charges."""
    out: dict = {}
    for variant in relay_floor.VARIANTS:
        port = free_port()
        proc = relay_floor.start(variant, up_port, port, tempfile.mkdtemp(dir=workdir))  # a store of its own
        try:
            _wait_http(port, proc)
            measured = await sequential(up_port, port, UPSTREAM_KEY, body, n)
        finally:
            stop(proc)
        out[variant] = {k: v for k, v in measured.items() if k.startswith(("requests", "direct", "added_p"))}
    out["gateway_added_p50_over_relay_sqlite"] = round(
        gateway["added_p50_ms"] / out["relay_sqlite"]["added_p50_ms"], 3)
    return out


async def throughput(port: int, headers: dict, body: bytes, concurrency: int, n: int) -> dict:
    conns = [Connection("127.0.0.1", port) for _ in range(concurrency)]
    for c in conns:
        await c.open()
    remaining = [n]
    latencies: list[float] = []
    deadline = time.monotonic() + PHASE_CAP_S

    async def worker(conn: Connection) -> None:
        while remaining[0] > 0 and time.monotonic() < deadline:
            remaining[0] -= 1
            status, _, total, _ = await conn.post("/v1/chat/completions", body, headers)
            assert status == 200, status
            latencies.append(total * 1000)

    # warm-up
    await asyncio.gather(*(c.post("/v1/chat/completions", body, headers) for c in conns))
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(pct(latencies, 50), 3), "p99_ms": round(pct(latencies, 99), 3)}


async def run(args: argparse.Namespace) -> dict:
    up_port, gw_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="llmgw-bench-")
    upstream = start_upstream(up_port)
    claude_port = free_port()
    claude_upstream = start_upstream(claude_port, claude_translation.FAKE_UPSTREAM)
    gateway = None
    try:
        _wait_http(up_port, upstream)
        _wait_http(claude_port, claude_upstream)
        gateway, key = start_gateway(gw_port, up_port, workdir, args.model,
                                     extra_env=claude_translation.gateway_env(claude_port),
                                     extra_models=(claude_translation.CLAUDE_MODEL,))
        _wait_http(gw_port, gateway)
        model = args.model
        plain = json.dumps({"model": model, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}).encode()
        streamed = json.dumps({"model": model, "max_tokens": 64, "stream": True,
                               "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}).encode()
        direct_h = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
        gw_h = {"Authorization": f"Bearer {key}"}
        result: dict = {"model": model, "store": "sqlite", "workers": 1, "cores": os.cpu_count()}
        result["gateway_idle_rss_mb_both_encodings"] = await idle_rss(gw_port, gw_h, model, gateway.pid)
        result["sequential_non_streaming"] = await sequential(up_port, gw_port, key, plain, args.sequential)
        result["sequential_relay_floor"] = await sequential_floor(
            up_port, workdir, plain, result["sequential_non_streaming"], args.sequential)
        result["sequential_streaming"] = await sequential(up_port, gw_port, key, streamed, args.sequential)
        for name, body in (("non_streaming", plain), ("streaming", streamed)):
            direct = await throughput(up_port, direct_h, body, args.concurrency, args.requests)
            through = await throughput(gw_port, gw_h, body, args.concurrency, args.requests)
            result[f"concurrent_{name}"] = {
                "concurrency": args.concurrency,
                "direct": direct,
                "gateway": through,
                "gateway_share_of_direct_rps": round(through["rps"] / direct["rps"], 3),
            }
            if name == "non_streaming":
                result["relay_floor_non_streaming"] = await floor(up_port, workdir, plain, direct, through, args)
        result["gateway_peak_rss_mb"] = peak_rss_mb(gateway.pid)
        # After the OpenAI phases: Claude's count uses a second tiktoken encoding (cl100k_base).
        claude = await claude_translation.measure(claude_port, gw_port, key, args.sequential)
        claude["gateway_peak_rss_mb_after"] = peak_rss_mb(gateway.pid)
        result["claude_through_chat_streaming"] = claude
        seq = result["sequential_non_streaming"]
        result["targets"] = {
            "added_p50_le_0_5_ms": seq["added_p50_ms"] <= 0.5,
            "added_p99_le_2_ms": seq["added_p99_ms"] <= 2.0,
            "idle_rss_both_encodings_le_150_mb": result["gateway_idle_rss_mb_both_encodings"] <= 150,
        }
        return result
    finally:
        for proc in (gateway, upstream, claude_upstream):
            stop(proc)


async def floor(up_port: int, workdir: str, body: bytes, direct: dict, gateway: dict, args: argparse.Namespace) -> dict:
    """bench/relay_floor.py's bare relays, under the same load as the gateway just had."""
    out: dict = {}
    for variant in relay_floor.VARIANTS:
        port = free_port()
        proc = relay_floor.start(variant, up_port, port, workdir)
        try:
            _wait_http(port, proc)
            measured = await throughput(port, {"Authorization": f"Bearer {UPSTREAM_KEY}"}, body,
                                        args.concurrency, args.requests)
        finally:
            stop(proc)
        out[variant] = {**measured, "share_of_direct_rps": round(measured["rps"] / direct["rps"], 3)}
    out["gateway_share_of_relay_sqlite_rps"] = round(gateway["rps"] / out["relay_sqlite"]["rps"], 3)
    return out


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
