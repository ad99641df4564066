"""Headers, CORS, the request log line and the generic 500 (API.md section 1)."""

from __future__ import annotations

import logging
import re
import time

import httpx

from llm_gateway.http.middleware import new_request_id
from llm_gateway.logs import _JSONFormatter
from tests.conftest import extra_gateway


def _chat(gateway, key, **extra):
    return httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], **extra})


def test_every_response_carries_a_request_id(gateway):
    key = gateway.key()
    responses = [
        _chat(gateway, key),
        httpx.get(gateway.url + "/healthz"),
        httpx.get(gateway.base_url + "/models"),
        httpx.get(gateway.base_url + "/nope"),
        httpx.options(gateway.base_url + "/chat/completions",
                      headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(i and re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_request_ids_sort_in_the_order_the_requests_came(gateway):
    """Ids lead with the time, so the usage records keyed by them grow at the end of their index."""
    key = gateway.key()
    ids = []
    for _ in range(5):
        ids.append(_chat(gateway, key).headers["x-request-id"])
        time.sleep(0.002)
    assert ids == sorted(ids)
    made = [new_request_id() for _ in range(5_000)]
    assert len(set(made)) == len(made)  # unique within the same millisecond too


def test_model_calls_carry_the_gateway_overhead(gateway):
    key = gateway.key()
    for stream in (False, True):
        r = _chat(gateway, key, stream=stream)
        assert r.status_code == 200
        assert float(r.headers["x-gateway-overhead-ms"]) >= 0


def test_refused_model_calls_carry_the_gateway_overhead_too(gateway):
    r = httpx.post(gateway.base_url + "/chat/completions", json={})
    assert r.status_code == 401 and float(r.headers["x-gateway-overhead-ms"]) >= 0
    assert "x-gateway-overhead-ms" not in httpx.get(gateway.url + "/healthz").headers


def test_cors_preflight_is_answered_for_any_origin(gateway):
    r = httpx.options(gateway.base_url + "/chat/completions", headers={
        "Origin": "https://somewhere.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "https://somewhere.example")
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers


def test_cors_origins_setting_narrows_the_allowed_origins(gateway):
    with extra_gateway(gateway, cors_origins=("https://ok.example",), env={}) as other:
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = httpx.options(other.url + "/v1/chat/completions", headers={"Origin": "https://ok.example", **preflight})
        bad = httpx.options(other.url + "/v1/chat/completions", headers={"Origin": "https://bad.example", **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ok.example"
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers


def test_simple_requests_carry_cors_headers_for_browsers_and_vary_on_origin_for_everyone(gateway):
    """A browser's request (with Origin) is answered with the allowed origin and the exposed headers;
    one without Origin gets only `Vary: Origin`, so a cache never hands it to a browser as is."""
    key = gateway.key()
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {key}"}
    browser = httpx.post(gateway.base_url + "/chat/completions", json=body,
                         headers={**auth, "Origin": "https://app.example"}, timeout=30)
    plain = httpx.post(gateway.base_url + "/chat/completions", json=body, headers=auth, timeout=30)
    assert browser.status_code == plain.status_code == 200
    assert browser.headers["access-control-allow-origin"] == "*"
    assert "x-ratelimit-remaining-requests" in browser.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in plain.headers
    assert plain.headers["vary"] == "Origin" and "access-control-expose-headers" not in plain.headers


def _wait_for_lines(handler: _Capture, request_id: str, done, within: float = 5.0) -> list[dict]:
    """The parsed log lines of `request_id`, once `done(lines)` holds or `within` seconds have passed."""
    import json
    import time

    deadline = time.monotonic() + within
    while True:
        lines = [json.loads(line) for line in list(handler.lines) if request_id in line]
        if done(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(_JSONFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_one_json_log_line_per_request_with_key_id_and_no_secret(gateway):
    import json

    handler = _Capture()
    logger = logging.getLogger("llm_gateway")
    logger.addHandler(handler)
    try:
        key = gateway.key()
        r = _chat(gateway, key)
        bad = httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": "Bearer sk-wrong" + "x" * 37},
                         json={})
    finally:
        logger.removeHandler(handler)
    mine = [json.loads(line) for line in handler.lines if r.headers["x-request-id"] in line]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["status"] == 200 and entry["model"] == "mock-gpt" and entry["key_id"].startswith("key_")
    assert entry["path"] == "/v1/chat/completions" and entry["ms"] >= 0
    everything = "\n".join(handler.lines)
    assert key not in everything and key[3:20] not in everything
    assert "sk-wrong" not in everything
    assert gateway.runtime.settings.env["OPENAI_API_KEY"] not in everything
    assert bad.status_code == 401


def test_unexpected_fault_is_a_generic_500_with_the_request_id(gateway, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gateway.runtime.gate, "admit", boom)
    r = _chat(gateway, gateway.key())
    assert r.status_code == 500
    body = r.json()["error"]
    assert r.headers["x-request-id"] in body["message"]
    assert "secret internals" not in r.text and "Traceback" not in r.text


def test_unexpected_fault_answers_in_the_callers_family_and_logs_500(gateway, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gateway.runtime.gate, "admit", boom)
    handler = _Capture()
    logger = logging.getLogger("llm_gateway")
    logger.addHandler(handler)
    try:
        r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": gateway.key()},
                       json={"model": "mock-claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        request_id = r.headers["x-request-id"]
        # The middleware writes the request line after the response has gone out: wait for it.
        lines = _wait_for_lines(handler, request_id, lambda lines: {"request", "unhandled error"} <= {
            line["msg"] for line in lines})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert request_id in body["error"]["message"] and "secret internals" not in r.text
    assert [line["status"] for line in lines if line["msg"] == "request"] == [500]
    assert any(line["msg"] == "unhandled error" for line in lines)
