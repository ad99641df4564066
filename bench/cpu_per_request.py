"""Gateway CPU per request, against the bare relay's, with one worker and with two.

What a request costs the machine, read from /proc (user + system time of the server's processes over
a measured phase, divided by its requests), at concurrency 16 against one fake OpenAI upstream:

- `gateway_1`: `llm-gateway serve` (SQLite, one worker), non-streaming chat;
- `gateway_2`: the same with `--workers 2` (the supervisor and both workers counted);
- `gateway_1_half`: one worker at half the concurrency, the load each of gateway_2's workers has when
  the kernel splits the connections evenly (on SQLite the writes of concurrent requests share
  commits, so a worker's CPU per request depends on how many requests it carries at once);
- `gateway_2_double`: two workers at twice the concurrency, each carrying gateway_1's load: what a
  second worker costs when it adds capacity rather than splitting the same load;
- `relay_sqlite`: bench/relay_floor.py's bare relay with the SQLite store's two transactions, the
  floor for any Python relay on this stack;
- `relay_sqlite_half`: the same at half the concurrency: how much more a request costs any Python
  relay on this machine when a process carries half the load (the floor under `gateway_2`'s ratio);
- `gateway_1_streaming`: one worker, streaming chat (informative).

Each variant runs `--rounds` times, the variants alternating so that the machine's drift falls on all
of them alike; reported per variant: every round's µs per request and requests/s, and the median.
Targets: `gateway_1` ≤ 300 µs or ≤ 1.5× `relay_sqlite`; `gateway_2` ≤ 1.15× `gateway_1`. Requests/s
is reported but not judged (the two cores are shared with the load generator and the upstream).

    python bench/cpu_per_request.py [--rounds 3] [--requests 3000] [--concurrency 16]

Bounded: a fixed number of requests per phase, each phase capped in time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "gateway"))

from bench import relay_floor  # noqa: E402
from bench.long_streams import cpu_seconds, gateway_pids  # noqa: E402
from bench.overhead import UPSTREAM_KEY, _wait_http, start_gateway, start_upstream, stop, throughput  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402

MODEL = "gpt-4o-mini"
VARIANTS = ("gateway_1", "gateway_2", "gateway_1_half", "gateway_2_double", "relay_sqlite", "relay_sqlite_half",
            "gateway_1_streaming")


def _body(stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "max_tokens": 64, "stream": stream,
                       "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}).encode()


async def _phase(variant: str, up_port: int, args: argparse.Namespace) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llmgw-cpu-") as work:
        if variant.startswith("relay_sqlite"):
            proc = relay_floor.start("relay_sqlite", up_port, port, work)
            headers = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
        else:
            proc, key = start_gateway(port, up_port, work, MODEL, workers=2 if variant.startswith("gateway_2") else 1,
                                      extra_env={"GATEWAY_LOG_LEVEL": "INFO"})
            headers = {"Authorization": f"Bearer {key}"}
        try:
            _wait_http(port, proc)
            body = _body(variant.endswith("streaming"))
            # warm every worker (its first requests import modules and load the tokenizer): many
            # connections, so that the kernel hands some to each
            await throughput(port, headers, body, 64, max(640, args.requests // 5))
            pids = gateway_pids(proc.pid)
            before = sum(cpu_seconds(pids))
            concurrency = {"half": args.concurrency // 2, "double": args.concurrency * 2}.get(
                variant.rpartition("_")[2], args.concurrency)
            measured = await throughput(port, headers, body, concurrency, args.requests)
            used = sum(cpu_seconds(pids)) - before
        finally:
            stop(proc)
    return {"cpu_us_per_request": round(used / measured["requests"] * 1e6, 1), "rps": measured["rps"]}


async def run(args: argparse.Namespace) -> dict:
    up_port = free_port()
    upstream = start_upstream(up_port)
    rounds: dict[str, list[dict]] = {v: [] for v in args.variants}
    try:
        _wait_http(up_port, upstream)
        for _ in range(args.rounds):
            for variant in args.variants:
                rounds[variant].append(await _phase(variant, up_port, args))
    finally:
        stop(upstream)
    median = {v: statistics.median(r["cpu_us_per_request"] for r in runs) for v, runs in rounds.items()}
    out: dict = {
        "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "variants": {v: {"runs": rounds[v], "median_cpu_us_per_request": median[v]} for v in rounds},
        "targets": {},
    }
    if "gateway_1" in median and "relay_sqlite" in median:
        ratio = out["gateway_1_over_relay_sqlite"] = round(median["gateway_1"] / median["relay_sqlite"], 3)
        out["targets"]["gateway_1_le_300_us_or_1_5x_relay_sqlite"] = median["gateway_1"] <= 300 or ratio <= 1.5
    if "gateway_1" in median and "gateway_2" in median:
        ratio = out["gateway_2_over_gateway_1"] = round(median["gateway_2"] / median["gateway_1"], 3)
        out["targets"]["gateway_2_le_1_15x_gateway_1"] = ratio <= 1.15
    if "gateway_1_half" in median and "gateway_2" in median:
        out["gateway_2_over_gateway_1_half"] = round(median["gateway_2"] / median["gateway_1_half"], 3)
    if "gateway_2_double" in median and "gateway_1" in median:
        out["gateway_2_double_over_gateway_1"] = round(median["gateway_2_double"] / median["gateway_1"], 3)
    if "gateway_1_half" in median and "gateway_1" in median:
        out["gateway_1_half_over_gateway_1"] = round(median["gateway_1_half"] / median["gateway_1"], 3)
    if "relay_sqlite_half" in median and "relay_sqlite" in median:
        out["relay_sqlite_half_over_relay_sqlite"] = round(median["relay_sqlite_half"] / median["relay_sqlite"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
