"""Billing from the usage each upstream reports, streaming and not, through every route (API.md 4).

The balance change must equal what the model's prices give for the reported tokens, including
Anthropic's cache writes and reads and OpenAI's cached prompt tokens, each at its own price.
"""

from __future__ import annotations

import math

import httpx
import pytest

from llm_gateway import tokens
from llm_gateway.money import to_micros

CLAUDE_PRICES = {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75"}
OPENAI_PRICES = {"input": "2.5", "output": "10", "cache_read": "1.25"}


def _cost(prices: dict[str, str], **counts: int) -> int:
    """Micros for token counts at USD-per-1M prices, rounded up (the contract's rule)."""
    total = sum(counts[name] * to_micros(prices.get(name, "0")) for name in counts)
    return math.ceil(total / 1_000_000)


def _call(gateway, key: str, route: str, model: str, stream: bool) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"}
    bodies = {
        "chat": ("/chat/completions", {"json": {"model": model, "stream": stream,
                                                "messages": [{"role": "user", "content": "hi"}]}}),
        "messages": ("/messages", {"json": {"model": model, "stream": stream, "max_tokens": 50,
                                            "messages": [{"role": "user", "content": "hi"}]}}),
        "complete": ("/complete", {"json": {"model": model, "stream": stream, "max_tokens_to_sample": 50,
                                            "prompt": "\n\nHuman: hi\n\nAssistant:"}}),
        "completions": ("/completions", {"json": {"model": model, "stream": stream, "prompt": "hi"}}),
        "claude_web": ("/claude/web/completion", {"data": {"model": model, "prompt": "hi",
                                                           "stream": "true" if stream else "false"}}),
    }
    path, kwargs = bodies[route]
    with httpx.stream("POST", gateway.base_url + path, headers=auth, timeout=30, **kwargs) as r:
        r.read()
    return r


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("route", ["chat", "messages", "complete", "completions", "claude_web"])
def test_a_claude_answer_is_billed_from_its_reported_usage_with_cache_tokens(gateway, route, stream):
    model = gateway.model(provider="anthropic", behavior={"cached": True}, **CLAUDE_PRICES)
    user = gateway.user(balance="1")
    r = _call(gateway, gateway.key(user), route, model, stream)
    assert r.status_code == 200, r.text
    # The fake reports 13 input, 5 cache-write, 4 cache-read and 9 output tokens.
    expected = _cost(CLAUDE_PRICES, input=13, cache_write=5, cache_read=4, output=9)
    assert expected == 194
    assert gateway.balance(user) == to_micros("1") - expected


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("route, endpoint", [("messages", "chat"), ("complete", "chat"), ("completions", "completions")])
def test_an_openai_answer_on_the_anthropic_and_legacy_routes_is_billed_from_its_usage(gateway, route, endpoint, stream):
    model = gateway.model(behavior={"cached": True}, endpoint=endpoint, **OPENAI_PRICES)
    user = gateway.user(balance="1")
    r = _call(gateway, gateway.key(user), route, model, stream)
    assert r.status_code == 200, r.text
    # The fake reports 11 prompt tokens (2 of them cached) and 7 completion tokens.
    expected = _cost(OPENAI_PRICES, input=9, cache_read=2, output=7)
    assert gateway.balance(user) == to_micros("1") - expected


@pytest.mark.parametrize("route", ["chat", "messages"])
def test_a_claude_stream_that_fails_midway_charges_the_output_already_sent(gateway, route):
    model = gateway.model(provider="anthropic", behavior={"fail_after": 2, "error_event": True}, **CLAUDE_PRICES)
    user = gateway.user(balance="1")
    r = _call(gateway, gateway.key(user), route, model, stream=True)
    assert r.status_code == 200
    # message_start reported the input; the output is counted from the two words that went out.
    produced = tokens.count_text("Hello from ", "cl100k_base")
    assert gateway.balance(user) == to_micros("1") - _cost(CLAUDE_PRICES, input=13, output=produced)


def test_a_claude_failure_before_any_output_charges_nothing(gateway):
    model = gateway.model(provider="anthropic", behavior={"status": 529}, **CLAUDE_PRICES)
    user = gateway.user(balance="1")
    r = _call(gateway, gateway.key(user), "messages", model, stream=True)
    assert r.status_code == 502 and r.json()["type"] == "error"
    assert gateway.balance(user) == to_micros("1")


def test_count_tokens_costs_nothing(gateway):
    model = gateway.model(provider="anthropic", **CLAUDE_PRICES)
    user = gateway.user(balance="1")
    r = httpx.post(gateway.base_url + "/messages/count_tokens", headers={"x-api-key": gateway.key(user)},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json() == {"input_tokens": 4242}
    assert gateway.balance(user) == to_micros("1")
