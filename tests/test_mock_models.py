"""The built-in mock models with the official SDKs and no account: `mock-claude` speaks Anthropic's
wire (so the Claude translation runs offline), and both mocks answer a tool call when a request
offers tools and asks for one, then answer the tool's result in words."""

from __future__ import annotations

import json

import pytest
from anthropic import Anthropic
from openai import OpenAI

WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}]
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "The weather in a city",
                      "input_schema": WEATHER_OPENAI[0]["function"]["parameters"]}]


@pytest.fixture
def clients(gateway):
    key = gateway.key(gateway.user(balance="1"))
    return OpenAI(base_url=gateway.base_url, api_key=key), Anthropic(base_url=gateway.url, api_key=key)


def test_mock_claude_speaks_anthropics_wire(gateway):
    spec = gateway.runtime.catalogs.current().get("mock-claude")
    assert (spec.provider, spec.wire) == ("mock", "anthropic")


def test_mock_claude_answers_messages_and_counts_tokens(clients):
    _, claude = clients
    answer = claude.messages.create(model="mock-claude", max_tokens=64,
                                    messages=[{"role": "user", "content": "Hello there"}])
    assert answer.model == "mock-claude" and answer.stop_reason == "end_turn"
    assert answer.content[0].text == "This is a mock response to: Hello there"
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    counted = claude.messages.count_tokens(model="mock-claude", messages=[{"role": "user", "content": "Hello"}])
    assert counted.input_tokens > 0
    short = claude.messages.create(model="mock-claude", max_tokens=2, messages=[{"role": "user", "content": "Hello"}])
    assert short.stop_reason == "max_tokens"


def test_a_tool_loop_on_mock_claude_through_the_anthropic_sdk(clients):
    _, claude = clients
    ask = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    first = claude.messages.create(model="mock-claude", max_tokens=256, tools=WEATHER_ANTHROPIC, messages=ask)
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input["city"], str) and call.input["days"] == 1
    second = claude.messages.create(model="mock-claude", max_tokens=256, tools=WEATHER_ANTHROPIC, messages=[
        *ask, {"role": "assistant", "content": [call.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
    ])
    assert second.stop_reason == "end_turn" and second.content[0].text == "The tool returned: sunny, 21 C"
    with claude.messages.stream(model="mock-claude", max_tokens=256, tools=WEATHER_ANTHROPIC, messages=ask) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == call.input


def test_no_tool_call_unless_one_is_asked_for(clients):
    _, claude = clients
    plain = claude.messages.create(model="mock-claude", max_tokens=64, tools=WEATHER_ANTHROPIC,
                                   messages=[{"role": "user", "content": "Hello"}])
    assert plain.stop_reason == "end_turn"
    forced = claude.messages.create(model="mock-claude", max_tokens=64, tools=WEATHER_ANTHROPIC,
                                    tool_choice={"type": "any"}, messages=[{"role": "user", "content": "Hello"}])
    assert forced.content[0].name == "get_weather"


@pytest.mark.parametrize("model", ["mock-claude", "mock-gpt"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_through_the_openai_sdk(clients, model, stream):
    """mock-claude through chat is the Claude translation at work; mock-gpt answers OpenAI's shape itself."""
    openai, _ = clients
    ask = [{"role": "user", "content": "Weather in Oslo please"}]
    kwargs = {"model": model, "messages": ask, "tools": WEATHER_OPENAI, "tool_choice": "required"}
    if stream:
        name, arguments, finish = "", "", None
        for chunk in openai.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    name += call.function.name or ""
                    arguments += call.function.arguments or ""
                finish = choice.finish_reason or finish
    else:
        answer = openai.chat.completions.create(**kwargs)
        call = answer.choices[0].message.tool_calls[0]
        name, arguments, finish = call.function.name, call.function.arguments, answer.choices[0].finish_reason
        assert answer.model == model
    assert (name, finish) == ("get_weather", "tool_calls")
    assert json.loads(arguments)["days"] == 1
    if not stream:
        done = openai.chat.completions.create(model=model, tools=WEATHER_OPENAI, messages=[
            *ask, answer.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "cloudy"}])
        assert done.choices[0].message.content == "The tool returned: cloudy"


def test_mock_claude_through_chat_and_responses(clients):
    openai, _ = clients
    chat = openai.chat.completions.create(model="mock-claude", messages=[{"role": "user", "content": "Hi"}])
    assert chat.choices[0].message.content == "This is a mock response to: Hi" and chat.model == "mock-claude"
    response = openai.responses.create(model="mock-claude", input="Hi again")
    assert response.output_text == "This is a mock response to: Hi again"
