"""Golden fixtures for every translation (tests/golden/*.json), streams checked event by event.

Each fixture file names a function or stream translator of `llm_gateway.translate`, its keyword
arguments, and cases: an input and the exact expected output. For streams, `expected[i]` is what
feeding `events[i]` must produce, and `finish` what ending the stream must produce.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from llm_gateway.translate import chat_claude, legacy, messages_openai, responses_claude

GOLDEN = Path(__file__).parent / "golden"

FUNCTIONS = {
    "chat_to_messages": lambda case, kw: (lambda r: {"body": r.body, "json_tool": r.json_tool})(
        chat_claude.chat_to_messages(case["input"], **kw)),
    "message_to_chat": lambda case, kw: chat_claude.message_to_chat(case["input"], json_tool=case["json_tool"], **kw),
    "messages_to_chat": lambda case, kw: messages_openai.messages_to_chat(case["input"], **kw),
    "chat_to_message": lambda case, kw: messages_openai.chat_to_message(case["input"], **kw),
    "prompt_to_messages": lambda case, kw: list(legacy.prompt_to_messages(case["input"])),
    "complete_to_messages": lambda case, kw: legacy.complete_to_messages(case["input"], **kw),
    "message_to_completion": lambda case, kw: legacy.message_to_completion(case["input"], **kw),
    "completion_to_chat": lambda case, kw: legacy.completion_to_chat(case["input"]),
    "chat_to_text_completion": lambda case, kw: legacy.chat_to_text_completion(case["input"]),
    "serialized_chat": lambda case, kw: legacy.serialized_chat(case["input"]),
    "serialized_messages": lambda case, kw: legacy.serialized_messages(case["input"], **kw),
    "responses_to_chat": lambda case, kw: responses_claude.responses_to_chat(
        case["input"], history=case.get("history", []), **kw),
    "message_to_response": lambda case, kw: responses_claude.message_to_response(
        case["input"], json_tool=case["json_tool"], **kw),
}
STREAMS = {
    "ChatChunks": lambda case, kw: chat_claude.ChatChunks(**kw, **case.get("options", {})),
    "MessageEvents": lambda case, kw: messages_openai.MessageEvents(**kw),
    "CompletionEvents": lambda case, kw: legacy.CompletionEvents(**kw),
    "TextCompletionChunks": lambda case, kw: legacy.TextCompletionChunks(),
    "ResponseEvents": lambda case, kw: responses_claude.ResponseEvents(**kw, **case.get("options", {})),
}


def _cases():
    for path in sorted(GOLDEN.glob("*.json")):
        doc = json.loads(path.read_text())
        for case in doc["cases"]:
            yield pytest.param(doc["function"], doc["kwargs"], case, id=f"{path.stem}:{case['name']}")


@pytest.mark.parametrize("function, kwargs, case", list(_cases()))
def test_translation_matches_its_golden_fixture(function, kwargs, case):
    original = copy.deepcopy(case)
    if function in STREAMS:
        translator = STREAMS[function](case, kwargs)
        for i, (event, expected) in enumerate(zip(case["events"], case["expected"], strict=True)):
            assert translator.feed(copy.deepcopy(event)) == expected, f"event {i}: {event}"
        assert translator.finish() == case["finish"]
    else:
        assert FUNCTIONS[function](case, kwargs) == case["expected"]
    assert case == original  # translation never mutates its input


def test_every_translation_has_golden_fixtures():
    covered = {json.loads(p.read_text())["function"] for p in GOLDEN.glob("*.json")}
    assert covered == set(FUNCTIONS) | set(STREAMS)


def _golden(name):
    return json.loads((GOLDEN / f"{name}.json").read_text())["cases"]


@pytest.mark.parametrize("case", _golden("chat_to_messages"), ids=lambda c: c["name"])
def test_every_translated_chat_request_is_one_the_messages_api_accepts(case):
    from tests.fakes.anthropic_upstream import validate

    validate(case["expected"]["body"], counting=False)  # raises on what Anthropic would refuse


@pytest.mark.parametrize("case", _golden("complete_to_messages") + _golden("serialized_messages"), ids=lambda c: c["name"])
def test_every_legacy_request_becomes_one_the_messages_api_accepts(case):
    from tests.fakes.anthropic_upstream import validate

    validate({**case["expected"], "model": "claude-up"}, counting=False)


@pytest.mark.parametrize("case", _golden("responses_to_chat"), ids=lambda c: c["name"])
def test_every_translated_responses_request_becomes_one_the_messages_api_accepts(case):
    from tests.fakes.anthropic_upstream import validate

    request = chat_claude.chat_to_messages(case["expected"], model="claude-up")
    validate(request.body, counting=False)
