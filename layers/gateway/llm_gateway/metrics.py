"""Prometheus metrics of `llm-gateway serve` (`GET /metrics`, text format 0.0.4).

Everything is read from what the request's context already holds when its log line is written (the
matched route, status, latency, the upstream's wait, the model, the charge, why a call failed), so
the model routes do no extra work for it; Lambda functions have no metrics object at all (CloudWatch
and X-Ray cover them).

With several workers each process counts its own requests and writes a snapshot to
`<store folder>/metrics/<pid>.json` every few seconds; `/metrics` answers its own live numbers plus
the other workers' latest snapshots, so a scrape that lands on any worker sees the whole server
(the others' figures at most a few seconds old).
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

# seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
UPSTREAM_FAILURES = ("upstream_error", "upstream_timeout", "upstream_rate_limited")
SNAPSHOT_STALE_S = 60.0  # a worker whose snapshot is older than this is gone


class Metrics:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.requests: dict[tuple[str, str, str], int] = {}  # (method, route, status) -> count
        self.latency: dict[str, list[float]] = {}  # route -> [bucket counts..., sum, count]
        self.overhead: list[float] = [0.0] * (len(OVERHEAD_BUCKETS) + 3)
        self.upstream_errors: dict[tuple[str, str], int] = {}  # (model, kind) -> count
        self.charges: dict[str, int] = {}  # model -> micros charged
        self.calls: dict[str, int] = {}  # model -> charged calls

    def observe(self, method: str, route: str, status: int, seconds: float, ctx: Any, model_call: bool) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 3)
        _add(hist, LATENCY_BUCKETS, seconds)
        if model_call:
            _add(self.overhead, OVERHEAD_BUCKETS, max(seconds - ctx.upstream_s, 0.0))
        model = ctx.model
        if model is None:
            return
        failure = ctx.status_detail if ctx.status_detail in UPSTREAM_FAILURES else (
            "upstream_error" if ctx.stream_status == "upstream_error" else None)
        if failure is not None:
            pair = (model, failure)
            self.upstream_errors[pair] = self.upstream_errors.get(pair, 0) + 1
        if ctx.cost:
            self.charges[model] = self.charges.get(model, 0) + ctx.cost
            self.calls[model] = self.calls.get(model, 0) + 1

    # --- several workers ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "at": time.time(),
            "requests": [[*k, v] for k, v in self.requests.items()],
            "latency": self.latency,
            "overhead": self.overhead,
            "upstream_errors": [[*k, v] for k, v in self.upstream_errors.items()],
            "charges": self.charges,
            "calls": self.calls,
        }

    def write_snapshot(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        temporary.replace(path)

    def merged(self) -> Metrics:
        """This process's numbers plus every other live worker's latest snapshot."""
        total = Metrics()
        total._merge(self.snapshot())
        if self.folder is not None and self.folder.is_dir():
            now = time.time()
            for path in self.folder.glob("*.json"):
                if path.stem == str(os.getpid()):
                    continue
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if now - data.get("at", 0) < SNAPSHOT_STALE_S:
                    total._merge(data)
        return total

    def _merge(self, data: dict[str, Any]) -> None:
        for method, route, status, n in data["requests"]:
            self.requests[(method, route, status)] = self.requests.get((method, route, status), 0) + n
        for route, hist in data["latency"].items():
            mine = self.latency.setdefault(route, [0.0] * len(hist))
            self.latency[route] = [a + b for a, b in zip(mine, hist, strict=True)]
        self.overhead = [a + b for a, b in zip(self.overhead, data["overhead"], strict=True)]
        for model, kind, n in data["upstream_errors"]:
            self.upstream_errors[(model, kind)] = self.upstream_errors.get((model, kind), 0) + n
        for model, micros in data["charges"].items():
            self.charges[model] = self.charges.get(model, 0) + micros
        for model, n in data["calls"].items():
            self.calls[model] = self.calls.get(model, 0) + n

    # --- exposition -----------------------------------------------------------------------------

    def render(self, currency: str) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("llm_gateway_requests_total", "counter", "HTTP requests answered, by method, route and status.")
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f'llm_gateway_requests_total{{method="{method}",route="{_esc(route)}",status="{status}"}} {n}')
        family("llm_gateway_request_duration_seconds", "histogram", "Time from arrival to the last byte, by route.")
        for route, hist in sorted(self.latency.items()):
            out.extend(_histogram("llm_gateway_request_duration_seconds", f'route="{_esc(route)}"',
                                  LATENCY_BUCKETS, hist))
        family("llm_gateway_overhead_seconds", "histogram",
               "Time a model call spent in the gateway itself, excluding the upstream's wait.")
        out.extend(_histogram("llm_gateway_overhead_seconds", "", OVERHEAD_BUCKETS, self.overhead))
        family("llm_gateway_upstream_errors_total", "counter",
               "Model calls the upstream failed (error, timeout, rate limit), by model and kind.")
        for (model, kind), n in sorted(self.upstream_errors.items()):
            out.append(f'llm_gateway_upstream_errors_total{{model="{_esc(model)}",kind="{kind}"}} {n}')
        family("llm_gateway_charged_total", "counter", f"Money charged, in {currency}, by model.")
        for model, micros in sorted(self.charges.items()):
            out.append(f'llm_gateway_charged_total{{model="{_esc(model)}",currency="{_esc(currency)}"}} '
                       f"{micros / 1_000_000:.6f}")
        family("llm_gateway_charged_calls_total", "counter", "Calls that were charged, by model.")
        for model, n in sorted(self.calls.items()):
            out.append(f'llm_gateway_charged_calls_total{{model="{_esc(model)}"}} {n}')
        return "\n".join(out) + "\n"


def _add(hist: list[float], buckets: tuple[float, ...], value: float) -> None:
    """hist: a count per bucket (non-cumulative), then +Inf, then the sum, then the count."""
    hist[bisect_left(buckets, value)] += 1
    hist[-2] += value
    hist[-1] += 1


def _histogram(name: str, labels: str, buckets: tuple[float, ...], hist: list[float]) -> list[str]:
    sep = "," if labels else ""
    lines, running = [], 0.0
    for bound, n in zip((*buckets, "+Inf"), hist[:-2], strict=True):
        running += n
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {int(running)}')
    lines.append(f"{name}_sum{{{labels}}} {hist[-2]:.6f}" if labels else f"{name}_sum {hist[-2]:.6f}")
    lines.append(f"{name}_count{{{labels}}} {int(hist[-1])}" if labels else f"{name}_count {int(hist[-1])}")
    return lines


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
