"""GATEWAY_IDLE_PAD_SECONDS: a non-streamed call whose upstream is slower than the pad commits its
200 and sends whitespace until the JSON body (API Gateway cuts a response stream idle for 5
minutes); the SDKs read that body as the same answer, charged once. Off, nothing changes."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from llm_gateway.money import to_micros
from tests.conftest import extra_gateway

PAD = 0.2  # seconds; the fake upstream answers after 1 s


@pytest.fixture(scope="module")
def padded(gateway):
    with extra_gateway(gateway, idle_pad_seconds=PAD) as other:
        yield other


def _slow(gateway, **behavior) -> str:
    return gateway.model(input="2", output="8", behavior={"delay": 1.0, **behavior})


def _raw_chat(gateway, key: str, model: str) -> tuple[httpx.Response, bytes]:
    with httpx.stream("POST", gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=30) as r:
        return r, b"".join(r.iter_raw())


def test_a_slow_answer_is_whitespace_then_the_json_body(padded):
    model = _slow(padded)
    r, body = _raw_chat(padded, padded.key(padded.user()), model)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "content-length" not in r.headers
    assert body[:1] == b" " and body.lstrip(b" ")[:1] == b"{"
    answer = json.loads(body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream"


def test_the_openai_sdk_reads_the_padded_answer_and_it_is_charged_once(padded):
    model = _slow(padded)
    user = padded.user(balance="5")
    client = openai.OpenAI(base_url=padded.base_url, api_key=padded.key(user), max_retries=0)
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello from the fake upstream"
    usage = padded.store.list_usage(user)
    assert usage.total == 1
    (record,) = usage.records
    assert record.cost > 0 and padded.balance(user) == to_micros("5") - record.cost
    assert len(padded.fake_openai.requests_for(model)) == 1


def test_the_anthropic_sdk_reads_a_padded_message(padded):
    model = padded.model(provider="anthropic", input="3", output="15", behavior={"delay": 1.0})
    client = anthropic.Anthropic(base_url=padded.url, api_key=padded.key(padded.user()), max_retries=0)
    message = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert message.type == "message" and message.content[0].type == "text"


def test_an_error_after_the_pad_is_the_familys_error_body_under_the_200(padded):
    model = _slow(padded, status=500)
    user = padded.user(balance="5")
    r, body = _raw_chat(padded, padded.key(user), model)
    assert r.status_code == 200 and body[:1] == b" "
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    assert padded.balance(user) == to_micros("5")  # the reservation released, nothing charged
    assert [(r.status, r.cost) for r in padded.store.list_usage(user).records] == [("error", 0)]


def test_a_fast_answer_is_untouched_by_the_pad(padded):
    model = padded.model(input="2", output="8")
    r, body = _raw_chat(padded, padded.key(padded.user()), model)
    assert r.status_code == 200 and body[:1] == b"{"
    assert int(r.headers["content-length"]) == len(body)


def test_without_the_setting_a_slow_answer_is_not_padded(gateway):
    assert gateway.runtime.settings.idle_pad_seconds == 0
    model = _slow(gateway)
    r, body = _raw_chat(gateway, gateway.key(gateway.user()), model)
    assert r.status_code == 200 and body[:1] == b"{"
    assert int(r.headers["content-length"]) == len(body)


def test_a_padded_responses_answer_is_kept_like_any_other(padded):
    model = padded.model(provider="anthropic", input="3", output="15", behavior={"delay": 1.0})
    auth = {"Authorization": f"Bearer {padded.key(padded.user())}"}
    with httpx.stream("POST", padded.base_url + "/responses", headers=auth, json={"model": model, "input": "hi"},
                      timeout=30) as r:
        body = b"".join(r.iter_raw())
    assert r.status_code == 200 and body[:1] == b" "
    answer = json.loads(body)
    assert answer["object"] == "response" and answer["status"] == "completed"
    kept = httpx.get(f"{padded.base_url}/responses/{answer['id']}", headers=auth)
    assert kept.status_code == 200 and kept.json()["id"] == answer["id"]


def test_the_streaming_functions_pad_before_api_gateways_idle_cut():
    """API Gateway cuts a REST API response stream idle for 5 minutes (regional endpoints); the pad
    and its repeats come well within it, and the upstream may answer later than that."""
    from tests.test_template import TEMPLATE

    functions = {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    for name, props in functions.items():
        env = props.get("Environment", {}).get("Variables", {})
        if props["Handler"] == "run.sh":
            pad, upstream = float(env["GATEWAY_IDLE_PAD_SECONDS"]), float(env["GATEWAY_UPSTREAM_TIMEOUT"])
            assert 0 < pad < 300 < upstream < props["Timeout"], name
        else:  # buffered (Mangum): a response is sent whole, so there is nothing to pad
            assert "GATEWAY_IDLE_PAD_SECONDS" not in env, name
