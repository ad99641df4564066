"""`claude-2-web`, the serialized legacy model (API.md 3.1 and 4): one user message upstream, a
90,000-token input limit, and 12 / 60 / 90 requests per minute by effective tier."""

from __future__ import annotations

import httpx
import pytest

MODEL = "claude-2-web"
UPSTREAM = "claude-haiku-4-5"


def _chat(gateway, key, body):
    return httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": MODEL, **body}, timeout=30)


def _last_upstream_body(gateway, marker: str) -> dict:
    found = [r.body for r in gateway.fake_anthropic.requests_for(UPSTREAM) if marker in str(r.body)]
    assert found, "the upstream received no such request"
    return found[-1]


def test_the_upstream_receives_one_user_message_holding_every_message_in_order(gateway):
    r = _chat(gateway, gateway.key(), {"temperature": 0.1, "max_tokens": 7, "tools": [], "messages": [
        {"role": "system", "content": "You are helpful. s2w-1"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "What's 2+2?"}]},
    ]})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == MODEL and r.json()["choices"][0]["message"]["content"] == "Hello from the fake Claude"
    sent = _last_upstream_body(gateway, "s2w-1")
    assert sent["messages"] == [{"role": "user", "content":
                                 "System: You are helpful. s2w-1\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: What's 2+2?"}]
    assert "system" not in sent and "temperature" not in sent and "tools" not in sent
    assert sent["max_tokens"] == 4096  # only model, messages and stream are honoured


def test_a_single_message_is_sent_unchanged(gateway):
    r = _chat(gateway, gateway.key(), {"messages": [{"role": "user", "content": "Just this. s2w-2"}]})
    assert r.status_code == 200
    assert _last_upstream_body(gateway, "s2w-2")["messages"] == [{"role": "user", "content": "Just this. s2w-2"}]


def test_streaming_is_honoured(gateway):
    with httpx.stream("POST", gateway.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {gateway.key()}"},
                      json={"model": MODEL, "stream": True, "messages": [
                          {"role": "user", "content": "a s2w-3"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    sent = _last_upstream_body(gateway, "s2w-3")
    assert sent["stream"] is True
    assert sent["messages"][0]["content"] == "Human: a s2w-3\n\nAssistant: b\n\nHuman: c"


def test_the_messages_route_serializes_too(gateway):
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()}, json={
        "model": MODEL, "max_tokens": 9, "system": "Be brief. s2w-4",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                     {"role": "user", "content": "Bye"}]})
    assert r.status_code == 200, r.text
    assert _last_upstream_body(gateway, "s2w-4")["messages"] == [
        {"role": "user", "content": "System: Be brief. s2w-4\n\nHuman: Hi\n\nAssistant: Yo\n\nHuman: Bye"}]


def test_the_claude_web_route_defaults_to_claude_2_web(gateway):
    r = httpx.post(gateway.base_url + "/claude/web/completion", headers={"Authorization": f"Bearer {gateway.key()}"},
                   data={"prompt": "Hello s2w-5"})
    assert r.status_code == 200 and r.json()["model"] == MODEL
    assert _last_upstream_body(gateway, "s2w-5")["messages"] == [{"role": "user", "content": "Hello s2w-5"}]


def test_input_over_90000_tokens_is_refused_before_the_upstream(gateway):
    user = gateway.user(balance="10")
    before = len(gateway.fake_anthropic.received)
    # Two messages whose serialized text is just over the limit (" hello" is one cl100k token).
    half = " hello" * 45_000
    r = _chat(gateway, gateway.key(user), {"messages": [
        {"role": "user", "content": half}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": half}]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert len(gateway.fake_anthropic.received) == before
    assert gateway.balance(user) == 10_000_000


def test_input_just_under_the_limit_is_served(gateway):
    r = _chat(gateway, gateway.key(), {"messages": [{"role": "user", "content": " hello" * 89_900}]})
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("tier, membership_days, limit", [
    ("regular", None, 12),
    ("vip", 30, 60),
    ("premium", 30, 90),
    ("premium", -1, 12),  # an expired membership falls back to regular
])
def test_requests_per_minute_by_effective_tier(gateway, tier, membership_days, limit):
    key = gateway.key(gateway.user(balance="50", tier=tier, membership_days=membership_days))
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=gateway.base_url, headers={"x-api-key": key}, timeout=30) as client:
        statuses = [client.post("/messages", json=body).status_code for _ in range(limit)]
        refused = client.post("/messages", json=body)
    assert statuses == [200] * limit
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
