"""`GET /metrics` on `serve`: requests, latency, the gateway's overhead, upstream errors and charges by
model, in Prometheus' text format; summed over every worker of the server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from llm_gateway.config import Settings
from llm_gateway.http.app import create_app
from llm_gateway.metrics import Metrics
from llm_gateway.runtime import Runtime
from tests.conftest import gateway_server


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in:\n{text}")


def test_metrics_count_requests_overhead_upstream_errors_and_charges(gateway, tmp_path):
    metrics = Metrics(tmp_path / "metrics")
    runtime = Runtime.build(Settings(store_url=gateway.runtime.settings.store_url, env=gateway.runtime.settings.env,
                                     upstream_timeout=5.0))
    server = gateway_server(create_app(runtime=runtime, metrics=metrics))
    try:
        priced = gateway.model(input="1", output="2")
        failing = gateway.model(behavior={"status": 500})
        runtime.catalogs.refresh()
        key = gateway.key()
        auth = {"Authorization": f"Bearer {key}"}
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        for model in ("mock-gpt", priced, failing):
            httpx.post(server.url + "/v1/chat/completions", headers=auth, json={"model": model, **chat})
        httpx.post(server.url + "/v1/chat/completions", json={"model": "mock-gpt", **chat})  # 401
        httpx.get(server.url + "/nowhere")
        text = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    assert _value(text, "llm_gateway_requests_total", route="/v1/chat/completions", status="200") == 2
    assert _value(text, "llm_gateway_requests_total", route="/v1/chat/completions", status="401") == 1
    assert _value(text, "llm_gateway_requests_total", route="unmatched", status="404") == 1
    assert _value(text, "llm_gateway_request_duration_seconds_count", route="/v1/chat/completions") == 4
    assert _value(text, "llm_gateway_request_duration_seconds_bucket", route="/v1/chat/completions", le="+Inf") == 4
    assert _value(text, "llm_gateway_overhead_seconds_count") == 4
    assert _value(text, "llm_gateway_upstream_errors_total", model=failing, kind="upstream_error") == 1
    assert _value(text, "llm_gateway_charged_total", model=priced, currency="USD") > 0
    assert _value(text, "llm_gateway_charged_calls_total", model=priced) == 1
    assert key not in text and "# TYPE llm_gateway_requests_total counter" in text


def test_metrics_can_require_a_token(gateway, tmp_path):
    env = {**gateway.runtime.settings.env, "GATEWAY_METRICS_TOKEN": "scrape-secret"}
    runtime = Runtime.build(Settings(store_url=gateway.runtime.settings.store_url, env=env))
    server = gateway_server(create_app(runtime=runtime, metrics=Metrics(None)))
    try:
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain; version=0.0.4")
    finally:
        server.stop()


def test_a_scrape_on_any_worker_sums_every_workers_snapshot(tmp_path: Path):
    class Ctx:
        upstream_s, model, cost, status_detail, stream_status = 0.01, "m", 5, None, None

    folder = tmp_path / "metrics"
    this, other = Metrics(folder), Metrics(folder)
    this.observe("POST", "/v1/chat/completions", 200, 0.02, Ctx(), True)
    for _ in range(2):
        other.observe("POST", "/v1/chat/completions", 200, 0.03, Ctx(), True)
    (folder).mkdir()
    import json

    (folder / "999999.json").write_text(json.dumps(other.snapshot()))  # another worker's latest
    text = this.merged().render("USD")
    assert _value(text, "llm_gateway_requests_total", route="/v1/chat/completions", status="200") == 3
    assert _value(text, "llm_gateway_charged_total", model="m") == 15e-6


def test_serve_with_two_workers_answers_for_both(tmp_path):
    """Requests spread over two workers; within a snapshot period a scrape sees all of them."""
    import time

    from tests.served import gateway_env, serve

    served = serve(tmp_path, gateway_env(tmp_path), workers=2)
    try:
        for _ in range(20):
            httpx.get(served.url + "/healthz")
        deadline = time.monotonic() + 20
        while True:
            text = httpx.get(served.url + "/metrics").text
            seen = _value(text, "llm_gateway_requests_total", method="GET", route="/healthz", status="200")
            if seen >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert seen >= 20
    finally:
        served.stop()
