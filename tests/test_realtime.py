"""The Realtime API relay (API.md 3.9) over a real WebSocket against a fake OpenAI realtime upstream:
the key by header or browser subprotocol, admission at connect, each `response.done` charged once,
the session ended with an `error` event when funds run out, and no reservation left behind."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from llm_gateway.money import to_micros

# per `response.done` of the fake: 90 text in × 4 + 10 cached × 0.4 + 200 audio in × 32
# + 20 text out × 16 + 40 audio out × 64 = 9644 micros
PRICES = {"kind": "realtime", "input": "4", "output": "16", "cache_read": "0.4", "audio_input": "32",
          "audio_output": "64"}
PER_RESPONSE = 9644
MINUTE = 600 * 32 + 1200 * 64  # the reservation at connect: one minute of audio


def _url(gateway, model: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/v1/realtime?model={model}"


def _until(ws, kind: str) -> list[dict]:
    seen = []
    while True:
        event = json.loads(ws.recv(timeout=5))
        seen.append(event)
        if event["type"] == kind:
            return seen


def _closed_with_error(ws) -> dict:
    events = []
    with pytest.raises(ConnectionClosed):
        while True:
            events.append(json.loads(ws.recv(timeout=5)))
    errors = [e for e in events if e["type"] == "error"]
    assert errors, events
    return errors[-1]["error"]


def _held(gateway, key: str) -> int:
    from llm_gateway.admission.keys import hash_key

    return gateway.store.get_key_by_hash(hash_key(key)).held


def test_each_response_done_is_charged_as_it_arrives_and_nothing_stays_reserved(gateway):
    model = gateway.model(**PRICES)
    user = gateway.user(balance="1")
    key = gateway.key(user)
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
        assert gateway.balance(user) == to_micros("1") - MINUTE  # admitted: the minimum is reserved
        for n in (1, 2):
            ws.send(json.dumps({"type": "response.create"}))
            _until(ws, "response.done")
            assert gateway.balance(user) == to_micros("1") - MINUTE - n * PER_RESPONSE
    assert gateway.fake_openai.realtime_received[-1] == (model, {"type": "response.create"})
    _eventually(lambda: gateway.balance(user) == to_micros("1") - 2 * PER_RESPONSE)
    assert _held(gateway, key) == 0


def test_the_key_may_come_in_the_browser_subprotocol_and_is_not_echoed(gateway):
    model = gateway.model(**PRICES)
    key = gateway.key(gateway.user(balance="1"))
    with connect(_url(gateway, model), subprotocols=["realtime", f"openai-insecure-api-key.{key}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"


def test_a_repeated_response_done_is_charged_once(gateway):
    model = gateway.model(**PRICES, behavior={"duplicate_done": True})
    user = gateway.user(balance="1")
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {gateway.key(user)}"}) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "response.create"}))
        _until(ws, "response.done")
        _until(ws, "response.done")
    _eventually(lambda: gateway.balance(user) == to_micros("1") - PER_RESPONSE)


def test_too_little_balance_for_the_minimum_is_refused_at_connect(gateway):
    model = gateway.model(**PRICES)
    user = gateway.user(balance="0.05")
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {gateway.key(user)}"}) as ws:
        error = _closed_with_error(ws)
    assert error["code"] == "insufficient_balance"
    assert gateway.balance(user) == to_micros("0.05")
    assert not [m for m, _ in gateway.fake_openai.realtime_received if m == model]


def test_the_session_ends_with_an_error_when_the_balance_runs_out(gateway):
    model = gateway.model(**PRICES)
    user = gateway.user(balance="0.1")  # the minute reserved leaves 4000 micros: less than one response
    key = gateway.key(user)
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "response.create"}))
        error = _closed_with_error(ws)
    assert error["code"] == "insufficient_balance"
    _eventually(lambda: gateway.balance(user) == to_micros("0.1") - PER_RESPONSE)
    assert _held(gateway, key) == 0


def test_the_session_ends_when_the_keys_spending_cap_runs_out(gateway):
    model = gateway.model(**PRICES)
    user = gateway.user(balance="10")
    key = gateway.key(user, max_fee=to_micros("0.1"))
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "response.create"}))
        error = _closed_with_error(ws)
    assert error["code"] == "insufficient_balance" and "cap" in error["message"]


def test_an_upstream_that_drops_leaves_no_reservation(gateway):
    model = gateway.model(**PRICES, behavior={"drop_after": 1})
    user = gateway.user(balance="1")
    key = gateway.key(user)
    with connect(_url(gateway, model), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "response.create"}))
        _until(ws, "response.done")
        ws.send(json.dumps({"type": "response.create"}))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
    _eventually(lambda: gateway.balance(user) == to_micros("1") - PER_RESPONSE)
    assert _held(gateway, key) == 0


@pytest.mark.parametrize("case, code", [("bad_key", "invalid_api_key"), ("chat_model", None)])
def test_refusals_at_connect_are_error_events(gateway, case, code):
    key = "sk-" + "x" * 45 if case == "bad_key" else gateway.key()
    with connect(_url(gateway, "mock-gpt"), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        error = _closed_with_error(ws)
    assert error["code"] == code
    if case == "chat_model":
        assert error["type"] == "invalid_request_error" and "realtime" in error["message"]


def _eventually(check, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
