"""What choosing a channel costs per request (API.md 7), against the target of 10 µs.

Measures, in-process with no upstream, what the relay does per request before calling: the model's
route from the router's memo (`Router.route`), then either the one channel of a single-channel model
(the default deployment: its implicit environment channel) or the first pick of a weighted choice
among three channels of one priority with one cooling (`Route.order`). Prints one JSON object with
the p50 and p99 in microseconds of each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "gateway"))

from llm_gateway.catalog import Catalog, default_catalog  # noqa: E402
from llm_gateway.catalog.channels import Router, parse_channels  # noqa: E402
from llm_gateway.config import Settings  # noqa: E402
from llm_gateway.providers import Providers  # noqa: E402

RUNS = 20_000
TARGET_US = 10.0


def _timed(step, runs: int = RUNS) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        step()
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return {"p50_us": round(samples[len(samples) // 2] / 1000, 3), "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 3)}


def main() -> None:
    router = Router(Providers(Settings(env={"OPENAI_API_KEY": "bench"})))
    plain = Catalog(default_catalog())
    spec = plain.get("gpt-4o")
    assert spec is not None

    def single() -> None:
        hop = router.route(plain, spec).single
        assert hop is not None
        hop.body({"model": spec.upstream_model})

    several = Catalog(default_catalog())
    several.channels = parse_channels({name: {"provider": "openai", "models": ["gpt-4o"], "weight": w}
                                       for name, w in (("a", 3), ("b", 1), ("c", 1))})
    cooling = {"c": time.monotonic() + 3600}

    def weighted() -> None:
        next(router.route(several, spec).order(cooling, 3))

    results = {"single_channel": _timed(single), "three_channels_weighted": _timed(weighted)}
    worst = max(r["p50_us"] for r in results.values())
    print(json.dumps({**results, "target_us": TARGET_US, "within_target": worst <= TARGET_US}))


if __name__ == "__main__":
    main()
