"""`/v1/messages`, `/v1/messages/count_tokens` and `/v1/complete` (API.md 3.2, 3.3), driven by the
official anthropic SDK and plain HTTP, for Claude models and for OpenAI-wire models."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from llm_gateway import tokens
from tests.fakes.anthropic_upstream import ANTHROPIC_OPERATOR_KEY

WEATHER_TOOL = {
    "name": "get_weather", "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _client(gateway, key: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, **kwargs)


def _sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


# ---------------------------------------------------------------------------------------------- Claude


def test_sdk_message_from_a_claude_model(gateway):
    model = gateway.model(provider="anthropic", input="3", output="15")
    key = gateway.key()
    reply = _client(gateway, key).messages.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Say hello"}],
    )
    assert reply.content[0].text == "Hello from the fake Claude"
    assert reply.usage.input_tokens == 13 and reply.usage.output_tokens == 9
    sent = gateway.fake_anthropic.requests_for(model)[-1]
    assert sent.path == "/v1/messages"
    assert sent.body == {"model": model, "max_tokens": 100, "system": "Be brief.",
                         "messages": [{"role": "user", "content": "Say hello"}]}
    assert sent.headers["x-api-key"] == ANTHROPIC_OPERATOR_KEY
    assert key not in json.dumps(sent.headers) and "authorization" not in sent.headers


def test_sdk_stream_from_a_claude_model_with_a_tool_call(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_use": {"name": "get_weather", "input": {"city": "Paris"}}})
    client = _client(gateway, gateway.key())
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Paris"} and final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 9
    assert gateway.fake_anthropic.requests_for(model)[-1].body["tools"] == [WEATHER_TOOL]


def test_the_clients_anthropic_version_and_beta_headers_are_passed_on(gateway):
    model = gateway.model(provider="anthropic")
    client = _client(gateway, gateway.key(), default_headers={"anthropic-version": "2024-01-01",
                                                              "anthropic-beta": "prompt-caching-2024-07-31"})
    client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    sent = gateway.fake_anthropic.requests_for(model)[-1].headers
    assert sent["anthropic-version"] == "2024-01-01" and sent["anthropic-beta"] == "prompt-caching-2024-07-31"


def test_without_a_client_version_the_gateway_sends_its_own(gateway):
    model = gateway.model(provider="anthropic")
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                   json={"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    sent = gateway.fake_anthropic.requests_for(model)[-1].headers
    assert sent["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in sent


def test_a_claude_request_is_forwarded_whole(gateway):
    model = gateway.model(provider="anthropic")
    body = {"model": model, "max_tokens": 10, "top_k": 3, "metadata": {"user_id": "u1"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]}
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()}, json=body)
    assert r.status_code == 200
    assert gateway.fake_anthropic.requests_for(model)[-1].body == body


def test_an_upstream_refusal_keeps_its_status_in_the_anthropic_shape(gateway):
    model = gateway.model(provider="anthropic", behavior={"status": 400, "message": "messages: too many images"})
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                   json={"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "messages: too many images"}}


def test_rejected_operator_credentials_are_a_502_not_the_clients_auth_failure(gateway):
    model = gateway.model(provider="anthropic", behavior={"status": 401})
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                   json={"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"


def test_an_error_event_mid_stream_ends_the_stream_with_an_anthropic_error_event(gateway):
    model = gateway.model(provider="anthropic", behavior={"fail_after": 2, "error_event": True})
    with httpx.stream("POST", gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                      json={"model": model, "max_tokens": 10, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        events = _sse(r)
    assert r.status_code == 200
    assert [e for e, _ in events].count("content_block_delta") == 2
    name, data = events[-1]
    assert name == "error" and data["type"] == "error" and data["error"]["type"] == "api_error"
    assert "Overloaded" in data["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"max_tokens": 10}, "messages"),
    ({"max_tokens": 10, "messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
    ({"max_tokens": "ten", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
])
def test_bad_bodies_are_400_naming_the_field(gateway, body, field):
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": gateway.key()}, json={"model": "mock-gpt", **body})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and field in r.json()["error"]["message"]


def test_missing_anthropic_credentials_answer_502_naming_the_setting(gateway):
    from llm_gateway.config import Settings
    from llm_gateway.http.app import create_app
    from llm_gateway.runtime import Runtime

    runtime = Runtime.build(Settings(store_url="sqlite:///:memory:", env={}), gateway.store)
    app = create_app(runtime=runtime)
    key = gateway.key()

    async def call():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            return await client.post("/v1/messages", headers={"x-api-key": key}, json={
                "model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})

    import asyncio

    r = asyncio.run(call())
    assert r.status_code == 502 and "ANTHROPIC_API_KEY" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------------------- OpenAI wire


def test_sdk_message_from_an_openai_model(gateway):
    model = gateway.model(input="2.5", output="10")
    reply = _client(gateway, gateway.key()).messages.create(
        model=model, max_tokens=50, system="Be brief.", stop_sequences=["END"],
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert reply.type == "message" and reply.content[0].text == "Hello from the fake upstream"
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == 11 and reply.usage.output_tokens == 7
    sent = gateway.fake_openai.requests_for(model)[-1].body
    assert sent == {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Say hello"}],
                    "max_completion_tokens": 50, "stop": ["END"]}


def test_sdk_tool_call_from_an_openai_model(gateway):
    model = gateway.model(behavior={"tool_call": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}})
    reply = _client(gateway, gateway.key()).messages.create(
        model=model, max_tokens=50, tools=[WEATHER_TOOL], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Rome?"}],
    )
    assert reply.stop_reason == "tool_use"
    assert reply.content[0].type == "tool_use" and reply.content[0].input == {"city": "Rome"}
    sent = gateway.fake_openai.requests_for(model)[-1].body
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_TOOL["input_schema"]}}]
    assert sent["tool_choice"] == "required"


def test_sdk_stream_with_a_tool_call_from_an_openai_model(gateway):
    model = gateway.model(behavior={"tool_call": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}})
    client = _client(gateway, gateway.key())
    with client.messages.stream(model=model, max_tokens=50, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 7
    sent = gateway.fake_openai.requests_for(model)[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_raw_stream_from_an_openai_model_is_the_full_event_sequence(gateway):
    model = gateway.model()
    with httpx.stream("POST", gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                      json={"model": model, "max_tokens": 20, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        events = _sse(r)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello from the fake upstream"
    assert events[-2][1]["usage"]["output_tokens"] == 7 and events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_sdk_stream_from_the_mock_model(gateway):
    with _client(gateway, gateway.key()).messages.stream(
        model="mock-gpt", max_tokens=50, messages=[{"role": "user", "content": "ping pong"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "This is a mock response to: ping pong"


def test_a_mid_stream_failure_of_an_openai_model_ends_with_an_error_event(gateway):
    model = gateway.model(behavior={"fail_after": 2, "error_event": True})
    with httpx.stream("POST", gateway.base_url + "/messages", headers={"x-api-key": gateway.key()},
                      json={"model": model, "max_tokens": 20, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        events = _sse(r)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [name for name, _ in events]


# ---------------------------------------------------------------------------------------- count_tokens


def test_count_tokens_for_a_claude_model_is_anthropics_exact_count(gateway):
    model = gateway.model(provider="anthropic", input="3", output="15", behavior={"input_tokens": 321})
    user = gateway.user()
    before = gateway.balance(user)
    counted = _client(gateway, gateway.key(user)).messages.count_tokens(
        model=model, system="Be brief.", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 321
    sent = gateway.fake_anthropic.requests_for(model)[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {"model": model, "system": "Be brief.", "tools": [WEATHER_TOOL],
                         "messages": [{"role": "user", "content": "hi"}]}
    assert gateway.balance(user) == before


def test_count_tokens_for_an_openai_model_is_tiktokens_count(gateway):
    model = gateway.model(input="2.5", output="10")
    messages = [{"role": "user", "content": "How many tokens is this sentence?"}]
    counted = _client(gateway, gateway.key()).messages.count_tokens(model=model, system="Be brief.", messages=messages)
    assert counted.input_tokens == tokens.count_messages(messages, "o200k_base", system="Be brief.")
    assert gateway.fake_openai.requests_for(model) == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_count_tokens_is_free_but_counts_against_the_rate_limit(gateway, provider):
    model = gateway.model(provider=provider, input="3", output="15", rpm={"regular": 2})
    key = gateway.key()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    statuses = [httpx.post(gateway.base_url + "/messages/count_tokens", headers={"x-api-key": key}, json=body).status_code
                for _ in range(2)]
    assert statuses == [200, 200]
    r = httpx.post(gateway.base_url + "/messages", headers={"x-api-key": key}, json={**body, "max_tokens": 5})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1


# ---------------------------------------------------------------------------------------------- complete


def test_complete_is_served_through_the_messages_api(gateway):
    model = gateway.model(provider="anthropic")
    r = httpx.post(gateway.base_url + "/complete", headers={"x-api-key": gateway.key()}, json={
        "model": model, "max_tokens_to_sample": 50, "stop_sequences": ["\n\nHuman:"],
        "prompt": "You are terse.\n\nHuman: Hello\n\nAssistant: Hi.\n\nHuman: Bye\n\nAssistant:"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "completion" and body["completion"] == "Hello from the fake Claude"
    assert body["stop_reason"] == "stop_sequence" and body["model"] == model
    # The model ended its own turn: the legacy API names the turn marker as the sequence that stopped it.
    assert body["stop"] == "\n\nHuman:"
    assert gateway.fake_anthropic.requests_for(model)[-1].body == {
        "model": model, "max_tokens": 50, "system": "You are terse.", "stop_sequences": ["\n\nHuman:"],
        "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                     {"role": "user", "content": "Bye"}]}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_complete_streams_completion_events(gateway, provider):
    model = gateway.model(provider=provider)
    with httpx.stream("POST", gateway.base_url + "/complete", headers={"x-api-key": gateway.key()}, json={
            "model": model, "max_tokens_to_sample": 50, "stream": True, "prompt": "\n\nHuman: Hi\n\nAssistant:"}) as r:
        events = _sse(r)
    completions = [data for name, data in events if name == "completion"]
    expected = "Hello from the fake Claude" if provider == "anthropic" else "Hello from the fake upstream"
    assert "".join(c["completion"] for c in completions) == expected
    assert [c["stop_reason"] for c in completions][-1] == "stop_sequence"
    assert completions[-1]["stop"] == "\n\nHuman:"
    assert all(c["stop_reason"] is None for c in completions[:-1])


def test_complete_needs_max_tokens_to_sample(gateway):
    r = httpx.post(gateway.base_url + "/complete", headers={"x-api-key": gateway.key()},
                   json={"model": "mock-gpt", "prompt": "\n\nHuman: Hi\n\nAssistant:"})
    assert r.status_code == 400 and "max_tokens_to_sample" in r.json()["error"]["message"]
