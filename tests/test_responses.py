"""The Responses API (API.md 3.8) through the official openai SDK: OpenAI models forwarded and billed
from the answer's usage, Claude and mock models translated through the Messages API (stream and
not, tools, JSON schema, reasoning), response ids owned by the user who created them, and kept
responses continuing a conversation (`previous_response_id`, `GET`, `input_items`, `DELETE`)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from llm_gateway.money import to_micros

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def _sent_anthropic(gateway, model):
    return gateway.fake_anthropic.requests_for(model)[-1].body


# --- OpenAI models: forwarded ------------------------------------------------------------------------

def test_openai_model_is_forwarded_with_every_field_and_billed_from_its_usage(gateway):
    model = gateway.model(input="2.5", output="10", cache_read="1.25", behavior={"cached": True})
    user = gateway.user(balance="1")
    reply = _client(gateway, gateway.key(user)).responses.create(
        model=model, input="Say hello", instructions="Be brief.", store=True,
        extra_body={"some_future_field": {"kept": True}}, metadata={"trace": "t1"})
    assert reply.output_text == "Hello from the fake upstream"
    assert reply.usage.input_tokens == 11 and reply.usage.output_tokens == 7
    sent = gateway.fake_openai.requests_for(model)[-1]
    assert sent.path == "/v1/responses"
    assert sent.body == {"model": model, "input": "Say hello", "instructions": "Be brief.", "store": True,
                         "some_future_field": {"kept": True}, "metadata": {"trace": "t1"}}
    assert gateway.fake_openai.api_key in sent.headers["authorization"]
    # 9 × 2.5 + 2 × 1.25 (cached, at the cached price) + 7 × 10 = 95 micros
    assert gateway.balance(user) == to_micros("1") - 95


def test_openai_model_stream_is_relayed_event_by_event_and_billed(gateway):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="1")
    with _client(gateway, gateway.key(user)).responses.stream(model=model, input="Say hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "Hello from the fake upstream"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert gateway.balance(user) == to_micros("1") - 98


def test_azure_model_is_forwarded_to_the_v1_responses_surface(gateway, fake_openai):
    from tests.conftest import extra_gateway

    env = {**gateway.runtime.settings.env, "AZURE_OPENAI_API_KEY": fake_openai.api_key,
           "AZURE_OPENAI_ENDPOINT": fake_openai.url}
    with extra_gateway(gateway, env=env) as azure:
        model = azure.model(provider="azure", upstream_model="my-deployment")
        reply = _client(azure, azure.key()).responses.create(model=model, input="hi")
    assert reply.output_text == "Hello from the fake upstream"
    sent = [r for r in fake_openai.received if r.body.get("model") == "my-deployment"][-1]
    assert sent.path == "/openai/v1/responses" and sent.headers["api-key"] == fake_openai.api_key


# --- ownership -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_another_users_response_id_is_the_same_404_as_an_unknown_one(gateway, provider):
    model = gateway.model(provider=provider)
    alice, bob = _client(gateway, gateway.key()), _client(gateway, gateway.key())
    created = alice.responses.create(model=model, input="mine")
    assert alice.responses.retrieve(created.id).id == created.id

    refusals = []
    for response_id in (created.id, "resp_never_issued"):
        for call in (lambda rid: bob.responses.retrieve(rid),
                     lambda rid: bob.responses.input_items.list(rid),
                     lambda rid: bob.responses.delete(rid),
                     lambda rid: bob.responses.create(model=model, input="hi", previous_response_id=rid)):
            with pytest.raises(openai.NotFoundError) as caught:
                call(response_id)
            body = caught.value.body
            refusals.append((body["type"], body["code"], body["message"].replace(response_id, "ID")))
    assert len(set(refusals[0::4] + refusals[4::4])) == 1  # retrieve: identical for both ids
    assert refusals[:4] == refusals[4:]  # every route: another user's id reads as an unknown one
    assert alice.responses.retrieve(created.id).id == created.id  # bob's delete did nothing


def test_forwarded_ids_are_checked_before_the_upstream_sees_the_call(gateway):
    model = gateway.model()
    alice, bob = _client(gateway, gateway.key()), _client(gateway, gateway.key())
    first = alice.responses.create(model=model, input="one")
    calls_before = len(gateway.fake_openai.requests_for(model))
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=model, input="two", previous_response_id=first.id)
    assert len(gateway.fake_openai.requests_for(model)) == calls_before
    second = alice.responses.create(model=model, input="two", previous_response_id=first.id)
    assert gateway.fake_openai.requests_for(model)[-1].body["previous_response_id"] == first.id
    assert alice.responses.input_items.list(second.id).data[0].type == "message"
    deleted = alice.responses.with_raw_response.delete(second.id).http_response.json()
    assert deleted == {"id": second.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(second.id)


def test_a_streamed_forwarded_id_is_owned_as_soon_as_the_client_sees_it(gateway):
    model = gateway.model()
    client = _client(gateway, gateway.key())
    with client.responses.stream(model=model, input="hi") as stream:
        for event in stream:
            if event.type == "response.created":
                assert client.responses.retrieve(event.response.id).id == event.response.id
                break


def test_store_false_keeps_nothing(gateway):
    for provider in ("openai", "anthropic"):
        model = gateway.model(provider=provider)
        client = _client(gateway, gateway.key())
        reply = client.responses.create(model=model, input="hi", store=False)
        assert reply.output_text
        assert gateway.store.get_response(reply.id) is None
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(reply.id)


# --- Claude and mock models: translated through the Messages API ----------------------------------

def test_claude_response_is_translated_from_and_to_the_messages_api(gateway):
    model = gateway.model(provider="anthropic", input="3", output="15")
    user = gateway.user(balance="1")
    reply = _client(gateway, gateway.key(user)).responses.create(
        model=model, instructions="Be brief.", max_output_tokens=64, temperature=0.5,
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])
    assert reply.object == "response" and reply.status == "completed" and reply.model == model
    assert reply.id.startswith("resp_")
    assert reply.output_text == "Hello from the fake Claude"
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (13, 9, 22)
    assert _sent_anthropic(gateway, model) == {
        "model": model, "system": "Be brief.", "max_tokens": 64, "temperature": 0.5,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}
    assert gateway.balance(user) == to_micros("1") - 174  # 13 × 3 + 9 × 15


def test_claude_stream_is_the_full_event_sequence_the_sdk_parses(gateway):
    model = gateway.model(provider="anthropic", input="3", output="15")
    user = gateway.user(balance="1")
    with _client(gateway, gateway.key(user)).responses.stream(model=model, input="Say hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello from the fake Claude"
    assert final.output_text == "Hello from the fake Claude" and final.usage.total_tokens == 22
    assert _sent_anthropic(gateway, model)["stream"] is True
    assert gateway.balance(user) == to_micros("1") - 174


def test_claude_function_call_round_trip_with_tool_choice(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_use": {"name": "get_weather", "input": {"city": "Paris"}}})
    client = _client(gateway, gateway.key())
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER], tool_choice="required",
                                    parallel_tool_calls=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    sent = _sent_anthropic(gateway, model)
    assert sent["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                              "input_schema": WEATHER["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    # the output goes back with previous_response_id: the kept conversation is replayed to Claude
    client.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}])
    messages = _sent_anthropic(gateway, model)["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"][-1] == {"type": "tool_use", "id": calls[0].call_id, "name": "get_weather",
                                          "input": {"city": "Paris"}}
    assert messages[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": calls[0].call_id, "content": "sunny, 21 C"}]}


def test_claude_streamed_function_call_arguments(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_use": {"name": "get_weather", "input": {"city": "Lisbon"}}})
    with _client(gateway, gateway.key()).responses.stream(model=model, input="Weather?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(deltas) == {"city": "Lisbon"}
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Lisbon"} and call.call_id == "toolu_fake1"


def test_claude_json_schema_comes_back_as_the_output_text(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_input": {"city": "Oslo", "temp": 3}})
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}}
    reply = _client(gateway, gateway.key()).responses.create(
        model=model, input="Weather?", text={"format": {"type": "json_schema", "name": "weather", "schema": schema}})
    assert json.loads(reply.output_text) == {"city": "Oslo", "temp": 3}
    assert [item.type for item in reply.output] == ["message"]
    sent = _sent_anthropic(gateway, model)
    assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert sent["tools"][-1]["input_schema"] == schema


def test_claude_reasoning_effort_becomes_thinking_and_a_reasoning_item(gateway):
    model = gateway.model(provider="anthropic", max_output_tokens=32000)
    for stream in (False, True):
        client = _client(gateway, gateway.key())
        if stream:
            with client.responses.stream(model=model, input="Think", reasoning={"effort": "medium"}) as s:
                events = list(s)
                reply = s.get_final_response()
            assert "response.reasoning_summary_text.delta" in [e.type for e in events]
        else:
            reply = client.responses.create(model=model, input="Think", reasoning={"effort": "medium"})
        kinds = [item.type for item in reply.output]
        assert kinds == ["reasoning", "message"]
        assert reply.output[0].summary[0].text == "Let me think about this."
        assert _sent_anthropic(gateway, model)["thinking"] == {"type": "enabled", "budget_tokens": 8192}


def test_claude_output_cap_reached_is_an_incomplete_response(gateway):
    model = gateway.model(provider="anthropic", behavior={"stop_reason": "max_tokens"})
    reply = _client(gateway, gateway.key()).responses.create(model=model, input="long", max_output_tokens=16)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"


def test_kept_claude_response_can_be_read_listed_continued_and_deleted(gateway):
    model = gateway.model(provider="anthropic")
    client = _client(gateway, gateway.key())
    first = client.responses.create(model=model, input="My name is Ada.")
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(model=model, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert _sent_anthropic(gateway, model)["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello from the fake Claude"},
        {"role": "user", "content": "What is my name?"}]
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"), ("message", "assistant"), ("message", "user")]
    page = client.responses.input_items.list(second.id, limit=1)
    assert page.data[0].content[0].text == "What is my name?" and page.has_more is True
    deleted = client.responses.with_raw_response.delete(first.id).http_response.json()
    assert deleted == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_mock_model_answers_the_responses_api_with_no_account(gateway):
    client = _client(gateway, gateway.key(gateway.user(balance="0")))
    reply = client.responses.create(model="mock-responses", input="ping pong")
    assert reply.output_text == "This is a mock response to: ping pong"
    with client.responses.stream(model="mock-responses", input="ping pong") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == reply.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"


# --- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tool", ["web_search", "file_search", "code_interpreter", "computer_use_preview"])
def test_openai_only_tools_on_a_translated_model_are_a_400_naming_them(gateway, tool):
    client = _client(gateway, gateway.key())
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock-gpt", input="hi", tools=[{"type": tool}])
    assert tool in caught.value.body["message"] and caught.value.body["param"] == "tools[0].type"


def test_unknown_input_item_type_is_a_400_naming_it(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway, gateway.key()).responses.create(model="mock-gpt", input=[{"type": "telepathy"}])
    assert "telepathy" in caught.value.body["message"] and caught.value.body["param"] == "input[0].type"


def test_bad_body_is_a_400_in_the_openai_shape(gateway):
    r = httpx.post(gateway.base_url + "/responses", headers={"Authorization": f"Bearer {gateway.key()}"},
                   json={"model": "mock-gpt", "input": 42})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == "input"


def test_a_claude_stream_that_breaks_ends_with_an_error_and_response_failed(gateway):
    model = gateway.model(provider="anthropic", input="3", output="15", behavior={"fail_after": 2})
    user = gateway.user(balance="1")
    with httpx.stream("POST", gateway.base_url + "/responses", headers={"Authorization": f"Bearer {gateway.key(user)}"},
                      json={"model": model, "input": "hi", "stream": True}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert gateway.balance(user) < to_micros("1")  # the output already sent is charged
