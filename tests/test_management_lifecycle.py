"""A key's life seen from `/v1/chat/completions`: created through the platform API, changed, deleted."""

from __future__ import annotations

import time

from llm_gateway.admission.keys import hash_key
from tests.conftest import extra_gateway
from tests.platform_client import ADMIN, chat, data, post

# Fake upstream usage: 11 prompt and 7 completion tokens; at 2.5 / 10 per 1M tokens that is
# 27.5 + 70 = 97.5 micros, rounded up to 98.
COST_PER_CALL = 98


def setup(gateway, **key_fields):
    user_id = gateway.user(balance="10")
    admin = gateway.key(user_id, is_admin=True)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin, key_fields))
    return user_id, admin, created


def update(gateway, admin, key_id, **fields):
    return data(post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key_id": key_id, **fields}))


def openai_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_a_created_key_works_at_once_within_its_permissions(gateway):
    allowed = gateway.model(provider="openai", input="2.5", output="10")
    other = gateway.model(provider="openai", input="2.5", output="10")
    _, _, created = setup(gateway, permissions=[allowed])
    assert chat(gateway.url, created["key"], allowed).status_code == 200
    openai_error(chat(gateway.url, created["key"], other), 403, "model_not_permitted")


def test_changed_permissions_apply_at_once(gateway):
    first = gateway.model(provider="openai", input="2.5", output="10")
    second = gateway.model(provider="openai", input="2.5", output="10")
    _, admin, created = setup(gateway, permissions=[first])
    assert chat(gateway.url, created["key"], first).status_code == 200
    update(gateway, admin, created["key_id"], permissions=[second])
    openai_error(chat(gateway.url, created["key"], first), 403, "model_not_permitted")
    assert chat(gateway.url, created["key"], second).status_code == 200


def test_a_disabled_key_is_401(gateway):
    _, admin, created = setup(gateway)
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200
    update(gateway, admin, created["key_id"], is_disabled=True)
    openai_error(chat(gateway.url, created["key"], "mock-gpt"), 401, "invalid_api_key")


def test_an_expired_key_is_401(gateway):
    _, admin, created = setup(gateway, expired_at="2099-01-01T00:00:00Z")
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200
    update(gateway, admin, created["key_id"], expired_at="2020-01-01T00:00:00Z")
    openai_error(chat(gateway.url, created["key"], "mock-gpt"), 401, "invalid_api_key")


def test_a_spending_cap_below_what_the_key_spent_is_402_on_a_priced_model(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    user_id, admin, created = setup(gateway, max_fee="1")
    assert chat(gateway.url, created["key"], priced).status_code == 200
    spent = update(gateway, admin, created["key_id"], max_fee="0.00005")  # 50 micros < 98 spent
    assert spent["used_fee"] == "0.000098"
    before = gateway.balance(user_id)
    openai_error(chat(gateway.url, created["key"], priced), 402, "insufficient_balance")
    assert gateway.balance(user_id) == before
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200  # a free model needs no funds
    update(gateway, admin, created["key_id"], max_fee="1")
    assert chat(gateway.url, created["key"], priced).status_code == 200


def test_a_deleted_key_is_401(gateway):
    _, admin, created = setup(gateway)
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200
    data(post(gateway.url, f"{ADMIN}/del-api-token", admin, {"key": created["key"]}))
    openai_error(chat(gateway.url, created["key"], "mock-gpt"), 401, "invalid_api_key")


def test_used_times_fee_and_at_reflect_real_use(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    user_id, admin, created = setup(gateway)
    started = time.time()
    for _ in range(3):
        assert chat(gateway.url, created["key"], priced).status_code == 200
    chat(gateway.url, created["key"], "t-no-such-model")  # refused before admission: not a use
    shown = {k["key_id"]: k for k in data(post(gateway.url, f"{ADMIN}/get-api-tokens", admin))}
    key = shown[created["key_id"]]
    assert key["used_times"] == 3
    assert key["used_fee"] == f"0.{3 * COST_PER_CALL:06d}".rstrip("0")
    stored = gateway.store.get_key(created["key_id"])
    assert stored.used_at is not None and started - 1 <= stored.used_at <= time.time()
    assert key["used_at"] is not None
    admin_id = gateway.store.get_key_by_hash(hash_key(admin)).key_id
    assert shown[admin_id]["used_times"] == 0  # management calls are not model use


def test_a_change_through_another_instance_applies_within_five_seconds(gateway):
    """Another process changing the key: this one's cache may serve it for at most its TTL (≤ 5 s)."""
    _, admin, created = setup(gateway)
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200  # now cached here
    with extra_gateway(gateway) as other:
        data(post(other.url, f"{ADMIN}/update-api-token", admin, {"key_id": created["key_id"], "is_disabled": True}))
        changed = time.monotonic()
        while chat(gateway.url, created["key"], "mock-gpt").status_code == 200:
            assert time.monotonic() - changed < 5.0
            time.sleep(0.1)
    openai_error(chat(gateway.url, created["key"], "mock-gpt"), 401, "invalid_api_key")
