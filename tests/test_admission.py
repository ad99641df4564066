"""Every admission refusal: exact status, body shape and headers; nothing charged, nothing sent upstream."""

from __future__ import annotations

import time

import httpx
import pytest

from llm_gateway.money import to_micros


def post(gateway, key: str | None, body: dict, path: str = "/chat/completions", **headers) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.base_url + path, json=body, headers=headers)


def chat(model: str, text: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def assert_openai_error(r: httpx.Response, status: int, type_: str, code: str | None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_ and body["error"]["code"] == code
    assert body["error"]["message"]
    assert r.headers["x-request-id"].startswith("req_")
    return body["error"]


@pytest.fixture
def priced(gateway):
    """A priced model on the fake upstream, a funded user and a key; yields what a test needs."""
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="5")
    return model, user, gateway.key(user)


def assert_untouched(gateway, model: str, user: str, start: int = to_micros("5")) -> None:
    assert gateway.fake_openai.requests_for(model) == []
    assert gateway.balance(user) == start
    assert gateway.store.list_usage(user).total == 0


def test_missing_key_is_401(gateway, priced):
    model, user, _ = priced
    err = assert_openai_error(post(gateway, None, chat(model)), 401, "invalid_request_error", "invalid_api_key")
    assert "key" in err["message"].lower()
    assert_untouched(gateway, model, user)


def test_unknown_key_is_401(gateway, priced):
    model, user, _ = priced
    r = post(gateway, "sk-" + "x" * 45, chat(model))
    assert_openai_error(r, 401, "invalid_request_error", "invalid_api_key")
    assert_untouched(gateway, model, user)


def test_disabled_key_is_401(gateway, priced):
    model, user, _ = priced
    key = gateway.key(user)
    gateway.store.update_key(gateway.store.list_keys(user)[-1].key_id, is_disabled=True)
    assert_openai_error(post(gateway, key, chat(model)), 401, "invalid_request_error", "invalid_api_key")
    assert_untouched(gateway, model, user)


def test_expired_key_is_401(gateway, priced):
    model, user, _ = priced
    key = gateway.key(user, expired_at=time.time() - 1)
    assert_openai_error(post(gateway, key, chat(model)), 401, "invalid_request_error", "invalid_api_key")
    assert_untouched(gateway, model, user)


def test_model_not_permitted_is_403(gateway, priced):
    model, user, _ = priced
    key = gateway.key(user, permissions=["gpt-4o-mini"])
    err = assert_openai_error(post(gateway, key, chat(model)), 403, "permission_error", "model_not_permitted")
    assert model in err["message"]
    assert_untouched(gateway, model, user)


def test_permission_prefix_wildcard_admits(gateway, priced):
    model, user, _ = priced
    key = gateway.key(user, permissions=["t-*"])
    assert post(gateway, key, chat(model)).status_code == 200


def test_403_comes_before_404(gateway, priced):
    _, user, _ = priced
    key = gateway.key(user, permissions=["gpt-4o"])
    assert post(gateway, key, chat("no-such-model")).status_code == 403


def test_unknown_model_is_404(gateway, priced):
    _, user, key = priced
    err = assert_openai_error(post(gateway, key, chat("no-such-model")), 404, "invalid_request_error",
                              "model_not_found")
    assert "no-such-model" in err["message"]
    assert gateway.balance(user) == to_micros("5")


def test_input_over_the_model_limit_is_400_context_length_exceeded(gateway):
    model = gateway.model(input="2.5", output="10", max_input_tokens=50)
    user = gateway.user(balance="5")
    key = gateway.key(user)
    err = assert_openai_error(post(gateway, key, chat(model, "word " * 60)), 400, "invalid_request_error",
                              "context_length_exceeded")
    assert "50" in err["message"]
    assert_untouched(gateway, model, user)


def test_rate_limit_is_429_with_retry_after_and_refusals_do_not_count(gateway):
    model = gateway.model(rpm={"regular": 2})
    user = gateway.user()
    key = gateway.key(user)
    assert [post(gateway, key, chat(model)).status_code for _ in range(2)] == [200, 200]
    r = post(gateway, key, chat(model))
    assert_openai_error(r, 429, "rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert len(gateway.fake_openai.requests_for(model)) == 2
    assert gateway.store.list_usage(user).total == 2


def test_rate_limit_follows_the_effective_tier(gateway):
    model = gateway.model(rpm={"regular": 1, "vip": 3})
    vip = gateway.user(tier="vip", membership_days=30)
    lapsed = gateway.user(tier="vip", membership_days=-1)
    vip_key, lapsed_key = gateway.key(vip), gateway.key(lapsed)
    assert [post(gateway, vip_key, chat(model)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [post(gateway, lapsed_key, chat(model)).status_code for _ in range(2)] == [200, 429]


def test_key_rpm_limits_across_models(gateway):
    user = gateway.user()
    key = gateway.key(user, rpm=2)
    codes = [post(gateway, key, chat(m)).status_code for m in ("mock-a", "mock-b", "mock-c")]
    assert codes == [200, 200, 429]
    other = gateway.key(user)
    assert post(gateway, other, chat("mock-c")).status_code == 200


def test_insufficient_balance_is_402(gateway):
    model = gateway.model(input="2.5", output="10", max_output_tokens=16384)
    user = gateway.user(balance="0.001")
    key = gateway.key(user)
    # Reservation: 16 000 output tokens × 10 USD/1M alone is 0.16 USD.
    err = assert_openai_error(post(gateway, key, chat(model, max_tokens=16000)), 402, "insufficient_balance",
                              "insufficient_balance")
    assert "balance" in err["message"].lower()
    assert_untouched(gateway, model, user, to_micros("0.001"))


def test_402_does_not_use_up_a_rate_limit_slot(gateway):
    model = gateway.model(input="2.5", output="10", rpm={"regular": 1}, max_output_tokens=16384)
    user = gateway.user(balance="0.001")
    key = gateway.key(user)
    assert post(gateway, key, chat(model, max_tokens=16000)).status_code == 402
    assert post(gateway, key, chat(model, max_tokens=10)).status_code == 200


def test_key_spending_cap_is_402(gateway):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="5")
    key = gateway.key(user, max_fee=to_micros("0.0001"))
    assert_openai_error(post(gateway, key, chat(model, max_tokens=1000)), 402, "insufficient_balance",
                        "insufficient_balance")
    assert_untouched(gateway, model, user)


def test_zero_price_model_needs_no_funds(gateway):
    user = gateway.user(balance="0")
    key = gateway.key(user)
    assert post(gateway, key, chat("mock-gpt")).status_code == 200
    assert gateway.balance(user) == 0


def test_anthropic_family_errors_have_the_anthropic_shape(gateway):
    r = httpx.post(gateway.url + "/v1/messages", json={"model": "x"})
    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert set(body["error"]) == {"type", "message"}


def test_reservation_is_released_when_the_upstream_fails(gateway):
    model = gateway.model(input="2.5", output="10", behavior={"status": 500})
    user = gateway.user(balance="5")
    key = gateway.key(user)
    r = post(gateway, key, chat(model))
    assert_openai_error(r, 502, "upstream_error", "upstream_error")
    assert gateway.balance(user) == to_micros("5")


def test_reservation_covers_every_requested_choice(gateway):
    model = gateway.model(input="2.5", output="10")
    # One choice of 1000 tokens reserves about 0.01 USD; n=3 needs about 0.03.
    user = gateway.user(balance="0.02")
    key = gateway.key(user)
    assert post(gateway, key, chat(model, max_tokens=1000, n=3)).status_code == 402
    assert post(gateway, key, chat(model, max_tokens=1000, n=1)).status_code == 200


def test_a_full_window_refuses_without_a_store_write_until_it_closes(gateway):
    """Refusals cost no store write: the process remembers the full window (never admitting more)."""
    model = gateway.model(rpm={"regular": 2})
    user = gateway.user()
    key = gateway.key(user)
    store = gateway.runtime.gate.store
    writes = []
    real_admit = store.admit

    def counted(*args, **kwargs):
        writes.append(args[0])
        return real_admit(*args, **kwargs)

    gateway.runtime.gate.store = type("Counted", (), {"admit": staticmethod(counted)})()
    try:
        statuses = [post(gateway, key, chat(model)).status_code for _ in range(6)]
        assert statuses == [200, 200, 429, 429, 429, 429]
        assert writes.count(user) == 3  # two admitted, one refused by the store, three refused here
        refused = post(gateway, key, chat(model))
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        # a limit raised meanwhile is the store's to judge at once
        gateway.store.set_model_override(model, {"rpm": {"regular": 3}})
        gateway.runtime.catalogs.refresh()
        assert post(gateway, key, chat(model)).status_code == 200
        assert writes.count(user) == 4
    finally:
        gateway.runtime.gate.store = store
