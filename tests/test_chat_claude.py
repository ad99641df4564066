"""Claude through the OpenAI-shaped routes (API.md 3.1, 3.3): the official openai SDK against a Claude
model, stream and not, with tools, JSON schema and reasoning; `/v1/completions` and
`/v1/claude/web/completion`."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def _sent(gateway, model):
    return gateway.fake_anthropic.requests_for(model)[-1].body


def test_sdk_chat_completion_from_claude(gateway):
    model = gateway.model(provider="anthropic")
    reply = _client(gateway, gateway.key()).chat.completions.create(
        model=model, max_tokens=64, temperature=1.7, stop="END", frequency_penalty=0.4, seed=7,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    assert reply.object == "chat.completion" and reply.model == model
    assert reply.choices[0].message.content == "Hello from the fake Claude"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (13, 9, 22)
    assert _sent(gateway, model) == {
        "model": model, "system": "Be brief.", "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 64, "stop_sequences": ["END"], "temperature": 1.0,
    }


def test_sdk_stream_from_claude_with_usage_ends_with_done(gateway):
    model = gateway.model(provider="anthropic")
    chunks = list(_client(gateway, gateway.key()).chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello"}],
    ))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake Claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 22
    assert _sent(gateway, model)["stream"] is True and _sent(gateway, model)["max_tokens"] == 4096
    with httpx.stream("POST", gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert all(json.loads(line[6:]).get("usage") is None for line in lines[:-1])  # not asked for: not shown


def test_sdk_tool_call_from_claude(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_use": {"name": "get_weather", "input": {"city": "Paris"}}})
    reply = _client(gateway, gateway.key()).chat.completions.create(
        model=model, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    sent = _sent(gateway, model)
    assert sent["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_sdk_streamed_tool_call_from_claude(gateway):
    model = gateway.model(provider="anthropic", behavior={"tool_use": {"name": "get_weather", "input": {"city": "Lisbon"}}})
    chunks = list(_client(gateway, gateway.key()).chat.completions.create(
        model=model, tools=[WEATHER], stream=True, messages=[{"role": "user", "content": "Weather in Lisbon?"}],
    ))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    fragments = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert fragments[0].id == "toolu_fake1" and fragments[0].function.name == "get_weather"
    assert len(fragments) > 2  # the arguments arrive in pieces, as input_json_delta did
    assert json.loads("".join(f.function.arguments or "" for f in fragments)) == {"city": "Lisbon"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_tool_conversation_reaches_claude_as_tool_use_and_tool_result_blocks(gateway):
    model = gateway.model(provider="anthropic")
    reply = _client(gateway, gateway.key()).chat.completions.create(model=model, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_9", "content": "18C"},
    ])
    assert reply.choices[0].message.content == "Hello from the fake Claude"
    assert _sent(gateway, model)["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "18C"}]},
    ]


def test_images_reach_claude_as_image_blocks(gateway):
    model = gateway.model(provider="anthropic")
    _client(gateway, gateway.key()).chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert _sent(gateway, model)["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_response_format_is_answered_as_content(gateway, stream):
    model = gateway.model(provider="anthropic", behavior={"tool_input": {"name": "Ada", "age": 36}})
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    client = _client(gateway, gateway.key())
    if stream:
        chunks = list(client.chat.completions.create(model=model, response_format=fmt, stream=True,
                                                     messages=[{"role": "user", "content": "A person"}]))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        reply = client.chat.completions.create(model=model, response_format=fmt,
                                               messages=[{"role": "user", "content": "A person"}])
        content, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert reply.choices[0].message.tool_calls is None
    assert json.loads(content) == {"name": "Ada", "age": 36} and finish == "stop"
    sent = _sent(gateway, model)
    assert sent["tools"][0]["input_schema"] == schema and sent["tool_choice"] == {"type": "tool", "name": "person"}


def test_reasoning_requests_thinking_and_returns_reasoning_content(gateway):
    model = gateway.model(provider="anthropic", behavior={"thinking": "First, greet."})
    r = httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                   json={"model": model, "reasoning_effort": "low", "temperature": 0.2,
                         "messages": [{"role": "user", "content": "hi"}]})
    message = r.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "First, greet." and message["content"] == "Hello from the fake Claude"
    sent = _sent(gateway, model)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "temperature" not in sent
    chunks = list(_client(gateway, gateway.key()).chat.completions.create(
        model=model, reasoning_effort="low", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices) == \
        "First, greet."


def test_a_mid_stream_claude_failure_ends_with_an_openai_error_event_and_done(gateway):
    model = gateway.model(provider="anthropic", behavior={"fail_after": 2, "error_event": True})
    with httpx.stream("POST", gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert error["type"] == "upstream_error" and "Overloaded" in error["message"]
    assert sum('"content":"' in line for line in lines) == 3  # the role chunk and two deltas went out first


def test_a_claude_refusal_keeps_its_status_in_the_openai_shape(gateway):
    model = gateway.model(provider="anthropic", behavior={"status": 400, "message": "prompt is too long"})
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway, gateway.key()).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 400 and "prompt is too long" in str(caught.value)


# ------------------------------------------------------------------------------------------ legacy routes


def test_legacy_completions_from_claude_json(gateway):
    model = gateway.model(provider="anthropic")
    reply = _client(gateway, gateway.key()).completions.create(model=model, prompt="Say hi", max_tokens=20)
    assert reply.object == "text_completion" and reply.choices[0].text == "Hello from the fake Claude"
    assert reply.choices[0].finish_reason == "stop" and reply.usage.total_tokens == 22
    assert _sent(gateway, model) == {"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 20}


def test_legacy_completions_from_claude_form_encoded_stream(gateway):
    model = gateway.model(provider="anthropic")
    with httpx.stream("POST", gateway.base_url + "/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                      data={"model": model, "prompt": "Say hi", "max_tokens": "20", "temperature": "0.5",
                            "stream": "true"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello from the fake Claude"
    assert _sent(gateway, model)["max_tokens"] == 20 and _sent(gateway, model)["temperature"] == 0.5


def test_legacy_completions_form_body_reaches_an_openai_model_as_typed_json(gateway):
    model = gateway.model(endpoint="completions")
    r = httpx.post(gateway.base_url + "/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                   data={"model": model, "prompt": "Say hi", "max_tokens": "16", "temperature": "0.3", "echo": "false"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "Hello from the fake upstream"
    sent = gateway.fake_openai.requests_for(model)[-1]
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": model, "prompt": "Say hi", "max_tokens": 16, "temperature": 0.3, "echo": False}


def test_legacy_completions_reject_a_bad_form_number(gateway):
    r = httpx.post(gateway.base_url + "/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                   data={"model": "mock-gpt", "prompt": "x", "max_tokens": "many"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_claude_web_completion_answers_as_a_chat_completion(gateway, encoding):
    model = gateway.model(provider="anthropic")
    fields = {"model": model, "prompt": "Say hi"}
    kwargs = {"data": fields} if encoding == "form" else {"json": fields}
    r = httpx.post(gateway.base_url + "/claude/web/completion",
                   headers={"Authorization": f"Bearer {gateway.key()}"}, **kwargs)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake Claude"
    assert _sent(gateway, model)["messages"] == [{"role": "user", "content": "Say hi"}]


def test_claude_web_completion_streams_chat_chunks(gateway):
    model = gateway.model(provider="anthropic")
    with httpx.stream("POST", gateway.base_url + "/claude/web/completion",
                      headers={"Authorization": f"Bearer {gateway.key()}"},
                      data={"model": model, "prompt": "Say hi", "stream": "true"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello from the fake Claude"


def test_claude_web_completion_needs_a_prompt(gateway):
    r = httpx.post(gateway.base_url + "/claude/web/completion", headers={"Authorization": f"Bearer {gateway.key()}"},
                   data={"model": "claude-2-web"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
