"""Upstream errors, timeouts, mid-stream failures and client disconnects (API.md 1 and 3.6)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from llm_gateway.money import to_micros
from llm_gateway.providers.pool import AiohttpPool, HttpxPool
from tests.conftest import extra_gateway
from tests.fakes.server import free_port


def _post(gateway, key, body, stream=False):
    return httpx.post(gateway.base_url + "/chat/completions", json={**body, "stream": stream},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _body(model):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "upstream, status, code",
    [(400, 400, None), (404, 404, "not_found"), (422, 422, None), (401, 502, "upstream_error"),
     (403, 502, "upstream_error"), (429, 429, "upstream_rate_limited"), (500, 502, "upstream_error"),
     (503, 502, "upstream_error")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_statuses_are_mapped_and_charge_nothing(gateway, upstream, status, code, stream):
    model = gateway.model(input="2.5", output="10",
                          behavior={"status": upstream, "message": "upstream says no to this request"})
    user = gateway.user(balance="5")
    r = _post(gateway, gateway.key(user), _body(model), stream)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code is not None:
        assert err["code"] == code
    if upstream in (400, 404, 422):
        assert err["message"] == "upstream says no to this request"
    if upstream in (401, 403):
        # The operator's credentials are wrong: never shown as the client's auth failure,
        # and the upstream's message (which may quote the credential) is not passed on.
        assert "credentials" in err["message"] and "sk-" not in err["message"]
    if upstream == 429:
        assert r.headers["retry-after"]
    assert gateway.balance(user) == to_micros("5")


def test_upstream_timeout_is_504(gateway):
    model = gateway.model(behavior={"delay": 1.5})
    with extra_gateway(gateway, upstream_timeout=0.5) as other:
        user = gateway.user(balance="5")
        r = httpx.post(other.url + "/v1/chat/completions", json=_body(model),
                       headers={"Authorization": f"Bearer {gateway.key(user)}"})
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "upstream_timeout"
        assert gateway.balance(user) == to_micros("5")
        assert len(gateway.fake_openai.requests_for(model)) == 1  # a timeout is not resent


def test_missing_provider_credentials_are_502_naming_the_setting(gateway):
    with extra_gateway(gateway, env={}) as other:
        user = gateway.user(balance="5")
        r = httpx.post(other.url + "/v1/chat/completions", json=_body("gpt-4o"),
                       headers={"Authorization": f"Bearer {gateway.key(user)}"})
        assert r.status_code == 502
        assert "OPENAI_API_KEY" in r.json()["error"]["message"]
        assert gateway.balance(user) == to_micros("5")


def _sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("error_event", [False, True])
def test_failure_after_output_ends_with_error_event_and_charges_the_output(gateway, error_event):
    model = gateway.model(input="2.5", output="10", behavior={"fail_after": 2, "error_event": error_event})
    user = gateway.user(balance="5")
    r = _post(gateway, gateway.key(user), _body(model), stream=True)
    assert r.status_code == 200
    data = _sse_data(r.text)
    assert data[-1] == "[DONE]"
    err = json.loads(data[-2])["error"]
    assert err["type"] == "upstream_error" and err["message"]
    content = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-2]
                      if json.loads(d).get("choices"))
    assert content == "Hello from "
    records = gateway.store.list_usage(user).records
    assert len(records) == 1 and records[0].status == "upstream_error"
    assert records[0].output_tokens >= 2 and records[0].cost > 0
    assert gateway.balance(user) == to_micros("5") - records[0].cost


def test_failure_before_any_output_is_a_plain_error_and_charges_nothing(gateway):
    model = gateway.model(input="2.5", output="10", behavior={"status": 500})
    user = gateway.user(balance="5")
    r = _post(gateway, gateway.key(user), _body(model), stream=True)
    assert r.status_code == 502 and r.headers["content-type"].startswith("application/json")
    assert gateway.balance(user) == to_micros("5")


def test_client_disconnect_mid_stream_is_charged_for_what_was_produced(gateway):
    model = gateway.model(input="2.5", output="10",
                          behavior={"chunk_delay": 0.2, "text": " ".join(["word"] * 40)})
    user = gateway.user(balance="5")
    key = gateway.key(user)
    port = int(gateway.url.rsplit(":", 1)[1])
    body = json.dumps({**_body(model), "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    received = b""
    while received.count(b"data: ") < 4:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    sock.close()
    deadline = time.monotonic() + 5
    while gateway.store.list_usage(user).total == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    records = gateway.store.list_usage(user).records
    assert len(records) == 1 and records[0].status == "client_closed"
    # Some words were produced, far fewer than the 40 of the whole answer.
    assert 1 <= records[0].output_tokens < 20
    assert records[0].cost == -(-(records[0].input_tokens * 2_500_000 + records[0].output_tokens * 10_000_000)
                               // 1_000_000)
    assert gateway.balance(user) == to_micros("5") - records[0].cost
    # The upstream stream was abandoned too: nothing more is read from it.
    time.sleep(0.5)
    assert gateway.store.list_usage(user).total == 1


def test_stream_without_upstream_usage_is_billed_by_counting(gateway):
    model = gateway.model(input="2.5", output="10", behavior={"usage": False})
    user = gateway.user(balance="5")
    r = _post(gateway, gateway.key(user), _body(model), stream=True)
    assert r.status_code == 200
    record = gateway.store.list_usage(user).records[0]
    # "hi" is 1 token + 3 of framing; "Hello from the fake upstream" is 5 tokens in o200k_base.
    assert (record.input_tokens, record.output_tokens) == (4, 5)
    assert gateway.balance(user) == to_micros("5") - record.cost


def test_long_upstream_pauses_send_sse_keepalive_comments_that_sdks_ignore(gateway):
    import openai

    model = gateway.model(behavior={"chunk_delay": 0.35})
    with extra_gateway(gateway, sse_keepalive=0.1) as other:
        key = gateway.key(gateway.user())
        with httpx.stream("POST", other.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={**_body(model), "stream": True}) as r:
            lines = [line for line in r.iter_lines() if line]
        assert ": keep-alive" in lines
        assert lines[-1] == "data: [DONE]"
        client = openai.OpenAI(base_url=other.url + "/v1", api_key=key, max_retries=0)
        chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}],
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream"


def test_a_store_failure_at_settlement_is_retried_and_the_answer_still_delivered(gateway, monkeypatch):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="5")
    real = gateway.store.settle
    calls = []

    def flaky(record):
        calls.append(record.request_id)
        if len(calls) == 1:
            raise RuntimeError("store briefly unavailable")
        return real(record)

    monkeypatch.setattr(gateway.store, "settle", flaky)
    r = _post(gateway, gateway.key(user), _body(model))
    assert r.status_code == 200
    assert len(calls) == 2 and calls[0] == calls[1]
    assert gateway.balance(user) == to_micros("5") - 98


def test_httpx_own_pool_serves_the_same_calls(gateway):
    """Lambda uses httpx's own transport (GATEWAY_HTTP_TRANSPORT=httpx): answers, streams, errors."""
    with extra_gateway(gateway, http_transport="httpx") as other:
        assert isinstance(other.runtime.providers.get("openai").pool, HttpxPool)
        ok = gateway.model(input="2.5", output="10")
        failing = gateway.model(behavior={"status": 400, "message": "bad field"})
        breaking = gateway.model(behavior={"fail_after": 2})
        user = gateway.user(balance="5")
        headers = {"Authorization": f"Bearer {gateway.key(user)}"}

        def call(model, stream=False):
            return httpx.post(other.url + "/v1/chat/completions", headers=headers, timeout=30,
                              json={**_body(model), "stream": stream})

        assert call(ok).json()["choices"][0]["message"]["content"] == "Hello from the fake upstream"
        streamed = _sse_data(call(ok, stream=True).text)
        assert streamed[-1] == "[DONE]"
        assert call(failing).status_code == 400 and call(failing).json()["error"]["message"] == "bad field"
        broken = _sse_data(call(breaking, stream=True).text)
        assert json.loads(broken[-2])["error"]["type"] == "upstream_error"
        assert gateway.balance(user) < to_micros("5")


class _BrokenUpstream:
    """A TCP server on 127.0.0.1 that reads a request and answers `reply` (no HTTP), then closes."""

    def __init__(self, reply: bytes) -> None:
        import threading

        self.reply = reply
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536):
                    self.requests += 1
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("pool", ["aiohttp", "httpx"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("reply", [None, b"", b"this is not HTTP at all\r\n\r\n"],
                         ids=["refused", "closed", "garbage"])
def test_an_unreachable_or_broken_upstream_is_502_and_charges_nothing(gateway, pool, stream, reply):
    if reply is None:
        port, broken = free_port(), None  # nothing listens there
    else:
        broken = _BrokenUpstream(reply)
        port = broken.port
    env = {**gateway.runtime.settings.env, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    try:
        with extra_gateway(gateway, http_transport=pool, env=env) as other:
            assert isinstance(other.runtime.providers.get("openai").pool, {"aiohttp": AiohttpPool, "httpx": HttpxPool}[pool])
            user = gateway.user(balance="5")
            r = httpx.post(other.url + "/v1/chat/completions", json={**_body("gpt-4o-mini"), "stream": stream},
                           headers={"Authorization": f"Bearer {gateway.key(user)}"}, timeout=30)
            assert r.status_code == 502, r.text
            err = r.json()["error"]
            assert err["code"] == "upstream_error" and "openai provider" in err["message"]
            assert gateway.balance(user) == to_micros("5")
            if broken is not None:  # a new connection that failed is not tried again
                assert broken.requests == 1
    finally:
        if broken is not None:
            broken.close()


@pytest.mark.parametrize("pool", ["aiohttp", "httpx"])
def test_a_gzip_compressed_answer_is_read_and_billed_by_either_pool(gateway, pool):
    model = gateway.model(input="2.5", output="10", behavior={"gzip": True, "text": "squeezed"})
    with extra_gateway(gateway, http_transport=pool) as other:
        user = gateway.user(balance="5")
        r = httpx.post(other.url + "/v1/chat/completions", json=_body(model),
                       headers={"Authorization": f"Bearer {gateway.key(user)}"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "squeezed"
        assert gateway.fake_openai.requests_for(model)[-1].headers["accept-encoding"] == "gzip, deflate"
        # 11 input tokens at 2.5 and 7 output tokens at 10 per 1M, as the fake upstream reports
        assert gateway.balance(user) == to_micros("5") - 98
