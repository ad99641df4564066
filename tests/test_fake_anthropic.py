"""The fake Anthropic upstream refuses what the real Messages API refuses, so tests can trust it."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.anthropic_upstream import ANTHROPIC_OPERATOR_KEY

HEADERS = {"x-api-key": ANTHROPIC_OPERATOR_KEY, "anthropic-version": "2023-06-01"}
GOOD = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _post(fake, body, headers=HEADERS):
    return httpx.post(fake.url + "/v1/messages", json=body, headers=headers)


def test_a_valid_request_is_answered(fake_anthropic):
    r = _post(fake_anthropic, GOOD)
    assert r.status_code == 200 and r.json()["content"][0]["type"] == "text"


@pytest.mark.parametrize("headers, status", [
    ({"anthropic-version": "2023-06-01"}, 401),
    ({"x-api-key": ANTHROPIC_OPERATOR_KEY}, 400),
])
def test_missing_key_or_version_header_is_refused(fake_anthropic, headers, status):
    r = _post(fake_anthropic, GOOD, headers)
    assert r.status_code == status and r.json()["type"] == "error"


@pytest.mark.parametrize("change", [
    {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
    {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},
    {"max_tokens": None},
    {"frequency_penalty": 0.5},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]},
    {"temperature": 1.5},
    {"stop_sequences": ["\n\n"]},
], ids=["system-role", "not-alternating", "first-not-user", "no-max-tokens", "unknown-field", "empty-text",
        "orphan-tool-result", "temperature", "whitespace-stop"])
def test_requests_the_real_api_refuses_are_refused(fake_anthropic, change):
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = _post(fake_anthropic, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_stream_is_the_real_event_sequence(fake_anthropic):
    with httpx.stream("POST", fake_anthropic.url + "/v1/messages", json={**GOOD, "stream": True}, headers=HEADERS) as r:
        names = [line.split(": ", 1)[1] for line in r.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
