"""The key end-to-end scenarios once more with the server on DynamoDB (moto, one request at a time):
the SDK over HTTP, every admission refusal, rate-limit exactness under concurrency, exact billing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from llm_gateway.money import to_micros


def chat(model: str, text: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def post(gw, key: str | None, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.base_url + "/chat/completions", json=body, headers=headers, timeout=30)


@pytest.fixture
def sdk(dynamo_gateway):
    def make(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=dynamo_gateway.base_url, api_key=key, max_retries=0)
    return make


def test_openai_sdk_chat_on_dynamodb(dynamo_gateway, sdk):
    reply = sdk(dynamo_gateway.key()).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Hello there"}])
    assert reply.choices[0].message.content == "This is a mock response to: Hello there"
    assert reply.usage.completion_tokens > 0


def test_openai_sdk_stream_on_dynamodb(dynamo_gateway, sdk):
    stream = sdk(dynamo_gateway.key()).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Hello there"}], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "This is a mock response to: Hello there"


def test_unknown_key_is_401(dynamo_gateway):
    r = post(dynamo_gateway, "sk-" + "x" * 45, chat("mock-gpt"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_disabled_key_is_401_within_the_cache_window(dynamo_gateway):
    user = dynamo_gateway.user()
    full = dynamo_gateway.key(user)
    assert post(dynamo_gateway, full, chat("mock-gpt")).status_code == 200
    (key,) = dynamo_gateway.store.list_keys(user)
    dynamo_gateway.store.update_key(key.key_id, is_disabled=True)
    dynamo_gateway.forget_caches()
    assert post(dynamo_gateway, full, chat("mock-gpt")).status_code == 401


def test_model_outside_the_keys_permissions_is_403(dynamo_gateway):
    key = dynamo_gateway.key(permissions=["mock-fast"])
    r = post(dynamo_gateway, key, chat("mock-gpt"))
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_key_rpm_is_429_with_retry_after_and_holds_nothing(dynamo_gateway):
    model = dynamo_gateway.model(input="2", output="8")
    user = dynamo_gateway.user(balance="5")
    key = dynamo_gateway.key(user, rpm=2)
    assert [post(dynamo_gateway, key, chat(model)).status_code for _ in range(2)] == [200, 200]
    spent = to_micros("5") - dynamo_gateway.balance(user)
    r = post(dynamo_gateway, key, chat(model))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert to_micros("5") - dynamo_gateway.balance(user) == spent
    assert dynamo_gateway.store.list_usage(user).total == 2


def test_insufficient_balance_is_402_and_uses_no_slot(dynamo_gateway):
    model = dynamo_gateway.model(input="2", output="8")
    user = dynamo_gateway.user(balance="0")
    key = dynamo_gateway.key(user, rpm=1)
    r = post(dynamo_gateway, key, chat(model))
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_balance"
    assert dynamo_gateway.fake_openai.requests_for(model) == []
    dynamo_gateway.store.add_balance(user, to_micros("1"))
    dynamo_gateway.forget_caches()
    assert post(dynamo_gateway, key, chat(model)).status_code == 200  # the refused call used no slot


def test_concurrent_requests_admit_exactly_the_keys_rpm(dynamo_gateway):
    key = dynamo_gateway.key(rpm=4)
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: post(dynamo_gateway, key, chat("mock-gpt")).status_code, range(10)))
    assert sorted(statuses) == [200] * 4 + [429] * 6


def test_billing_is_exact_and_recorded_once(dynamo_gateway):
    model = dynamo_gateway.model(input="2", output="8")  # micros per token: 2 in, 8 out
    user = dynamo_gateway.user(balance="1")
    key = dynamo_gateway.key(user)
    r = post(dynamo_gateway, key, chat(model, "count these words please"))
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    cost = 2 * usage["prompt_tokens"] + 8 * usage["completion_tokens"]
    assert dynamo_gateway.balance(user) == to_micros("1") - cost
    page = dynamo_gateway.store.list_usage(user)
    assert (page.total, page.cost, page.records[0].model) == (1, cost, model)
    (stored,) = dynamo_gateway.store.list_keys(user)
    assert (stored.used_times, stored.used_fee, stored.held) == (1, cost, 0)
