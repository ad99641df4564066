"""End to end: the official openai SDK, base URL swapped, against the gateway and a fake OpenAI."""

from __future__ import annotations

import httpx
import openai
import pytest

from llm_gateway.money import to_micros
from tests.fakes.openai_upstream import OPERATOR_KEY


def _client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def test_non_streaming_chat_parses_and_bills_reported_usage(gateway):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="1")
    key = gateway.key(user)
    reply = _client(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert reply.choices[0].message.content == "Hello from the fake upstream"
    assert reply.usage.prompt_tokens == 11 and reply.usage.completion_tokens == 7
    # 11 × 2.5 + 7 × 10 = 97.5 micro-dollars, rounded up to 98 micros.
    assert gateway.balance(user) == to_micros("1") - 98


def test_streaming_chat_parses_every_chunk_and_ends_with_done(gateway):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="1")
    key = gateway.key(user)
    stream = _client(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream"
    # The client did not ask for usage, so the usage chunk the gateway asked for is not shown.
    assert all(c.usage is None for c in chunks)
    assert gateway.balance(user) == to_micros("1") - 98


def test_streaming_usage_chunk_is_shown_when_the_client_asks(gateway):
    model = gateway.model(input="2.5", output="10")
    key = gateway.key(gateway.user())
    chunks = list(_client(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18


def test_raw_stream_is_valid_sse_ending_with_done(gateway):
    key = gateway.key(gateway.user())
    with httpx.stream("POST", gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "mock-gpt", "stream": True,
                            "messages": [{"role": "user", "content": "one two three"}]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_upstream_receives_operator_credential_and_never_the_client_key(gateway):
    fake = gateway.fake_openai
    model = gateway.model()
    key = gateway.key(gateway.user())
    _client(gateway, key).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    list(_client(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], stream=True))
    received = fake.requests_for(model)
    assert len(received) == 2
    for r in received:
        assert r.headers["authorization"] == f"Bearer {OPERATOR_KEY}"
        assert key not in repr(r.headers) and key not in repr(r.body)


def test_every_client_field_is_forwarded_and_streams_ask_for_usage(gateway):
    fake = gateway.fake_openai
    model = gateway.model(upstream_model=None) if False else gateway.model()
    key = gateway.key(gateway.user())
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "temperature": 0.3,
            "seed": 7, "some_future_field": {"a": 1}, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}) as r:
        r.read()
    sent = fake.requests_for(model)[-1].body
    assert sent["temperature"] == 0.3 and sent["seed"] == 7 and sent["some_future_field"] == {"a": 1}
    assert sent["stream_options"] == {"include_usage": True}


def test_upstream_model_id_replaces_the_catalog_name(gateway):
    fake = gateway.fake_openai
    model = gateway.model(upstream_model="gpt-4o-2024-08-06")
    key = gateway.key(gateway.user())
    _client(gateway, key).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert fake.received[-1].body["model"] == "gpt-4o-2024-08-06"


def test_tool_calls_pass_through(gateway):
    model = gateway.model(behavior={"tool_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}})
    key = gateway.key(gateway.user())
    client = _client(gateway, key)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "w"}], tools=tools)
    assert reply.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "w"}], tools=tools, stream=True))
    args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                   for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert args == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_cached_tokens_are_billed_once_at_the_cached_price(gateway):
    model = gateway.model(input="2.5", output="10", cache_read="1.25", behavior={"cached": True})
    user = gateway.user(balance="1")
    key = gateway.key(user)
    _client(gateway, key).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    # 9 × 2.5 + 2 × 1.25 + 7 × 10 = 95 micros.
    assert gateway.balance(user) == to_micros("1") - 95


def test_mock_model_answers_without_any_account(gateway):
    key = gateway.key(gateway.user(balance="0"))
    reply = _client(gateway, key).chat.completions.create(
        model="mock-anything", messages=[{"role": "user", "content": "ping"}])
    assert reply.choices[0].message.content == "This is a mock response to: ping"
    assert reply.usage.completion_tokens > 0


def test_models_list_is_filtered_by_key_permissions(gateway):
    key = gateway.key(gateway.user(), permissions=["gpt-4o", "claude-*"])
    ids = [m.id for m in _client(gateway, key).models.list()]
    assert "gpt-4o" in ids and "claude-sonnet-4-5" in ids
    assert "gpt-4o-mini" not in ids and "mock-gpt" not in ids
    everything = [m.id for m in _client(gateway, gateway.key(gateway.user())).models.list()]
    assert {"gpt-4o-mini", "mock-gpt", "gpt-4.1", "claude-opus-4-5"} <= set(everything)


@pytest.mark.parametrize("header", ["bearer", "bare", "x-api-key"])
def test_key_is_accepted_in_every_documented_header(gateway, header):
    key = gateway.key(gateway.user())
    headers = {"bearer": {"Authorization": f"Bearer {key}"}, "bare": {"Authorization": key},
               "x-api-key": {"x-api-key": key}}[header]
    r = httpx.post(gateway.base_url + "/chat/completions", headers=headers,
                   json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
