"""Errors a person can act on (issue 17, item 5): what a 402 needs and what to change, which header
carries the key, one wording per family for bad fields, only usable models listed, and answers
naming the model the client asked for."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

from llm_gateway.money import to_micros
from tests.conftest import extra_gateway


def _post(gateway, path: str, key: str | None, body, **headers) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=10)


def test_a_402_says_the_balance_what_the_reservation_needs_and_how_to_need_less(gateway):
    model = gateway.model(input="1000", output="1000", max_output_tokens=4096)
    user = gateway.user(balance="0.01")
    key = gateway.key(user)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    r = _post(gateway, "/v1/chat/completions", key, body)
    assert r.status_code == 402
    message = r.json()["error"]["message"]
    needs = Decimal(re.search(r"needs ([\d.]+)", message).group(1))
    assert needs > Decimal("4")  # 4096 output tokens at 1000 per 1M, and the input
    assert "balance is 0.01" in message
    assert "max_tokens" in message and "4096" in message
    r = _post(gateway, "/v1/messages", key, {**body, "max_tokens": 3000})
    assert r.status_code == 402 and "max_tokens" in r.json()["error"]["message"]
    assert "3000 output tokens (its max_tokens)" in r.json()["error"]["message"]

    capped = gateway.key(gateway.user(balance="100"), max_fee=to_micros("0.5"))
    r = _post(gateway, "/v1/chat/completions", capped, body)
    message = r.json()["error"]["message"]
    assert r.status_code == 402 and "spending cap" in message and "0.5 left" in message and "max_tokens" in message


def test_auth_errors_name_the_header_the_key_goes_in(gateway):
    body = {"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = _post(gateway, "/v1/messages", None, body)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in r.json()["error"]["message"]
    r = _post(gateway, "/v1/messages", None, body, **{"x-api-key": "sk-" + "x" * 45})
    assert r.status_code == 401 and "x-api-key" in r.json()["error"]["message"]
    r = _post(gateway, "/v1/chat/completions", None, body)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]


_OPENAI_STYLE = re.compile(r"^(Invalid (value|type) for '[^']+': .+|Missing required parameter: '[^']+'\.)$")
_ANTHROPIC_STYLE = re.compile(r"^[\w.]+: .+$")


@pytest.mark.parametrize("path,body,style", [
    ("/v1/chat/completions", {"model": "mock-gpt"}, _OPENAI_STYLE),
    ("/v1/chat/completions", {"model": "mock-gpt", "messages": [{"role": "robot", "content": "x"}]}, _OPENAI_STYLE),
    ("/v1/chat/completions", {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "n": "2"},
     _OPENAI_STYLE),
    ("/v1/embeddings", {"model": "mock-embedding", "input": {"a": 1}}, _OPENAI_STYLE),
    ("/v1/images/generations", {"model": "mock-image"}, _OPENAI_STYLE),
    ("/v1/messages", {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]}, _ANTHROPIC_STYLE),
    ("/v1/messages", {"model": "mock-gpt", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
     _ANTHROPIC_STYLE),
    ("/v1/messages/count_tokens", {"model": "mock-gpt", "messages": "x"}, _ANTHROPIC_STYLE),
    ("/v1/complete", {"model": "mock-gpt", "prompt": 5, "max_tokens_to_sample": 5}, _ANTHROPIC_STYLE),
    ("/api/v1/user/admin/new-api-token", {"rpm": "lots"}, _OPENAI_STYLE),
    ("/api/v1/ai/draw/mj/query", {"taskId": "first"}, _OPENAI_STYLE),
])
def test_validation_messages_have_one_style_per_family(gateway, path, body, style):
    key = gateway.key(gateway.user(), is_admin=True)
    r = _post(gateway, path, key, body)
    assert r.status_code == 400, r.text
    answer = r.json()
    message = answer.get("message") if "statusCode" in answer else answer["error"]["message"]
    assert style.match(message), message


def test_the_model_list_holds_only_models_whose_provider_is_configured(gateway):
    key = gateway.key()
    listed = {m["id"] for m in httpx.get(gateway.base_url + "/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]}
    assert {"mock-gpt", "gpt-4o", "claude-sonnet-4-5"} <= listed  # mock, and OpenAI and Anthropic are configured
    unset = {name for name, spec in gateway.runtime.catalogs.current().models.items()
             if spec.provider in ("google-cse", "serper", "azure-speech")}
    assert unset and not unset & listed  # no GOOGLE_CSE_API_KEY, SERPER_API_KEY, AZURE_SPEECH_KEY here
    with extra_gateway(gateway, env={}) as bare:  # no provider configured at all: only the mock models
        listed = {m["id"] for m in httpx.get(bare.base_url + "/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]}
        assert listed and all(gateway.runtime.catalogs.current().get(m).provider == "mock" for m in listed)


@pytest.mark.parametrize("stream", [False, True])
def test_answers_name_the_requested_model_not_the_upstreams(gateway, stream):
    model = gateway.model(upstream_model="gpt-4o-mini")
    claude = gateway.model(provider="anthropic", upstream_model="claude-haiku-4-5")
    key = gateway.key()
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": stream, "max_tokens": 16}
    for name in (model, claude):
        for path, extra in (("/v1/chat/completions", {}), ("/v1/messages", {}), ("/v1/completions", {"prompt": "hi"})):
            body = {"model": name, **chat, **extra}
            if path == "/v1/completions":
                body.pop("messages")
            r = _post(gateway, path, key, body)
            assert r.status_code == 200, (path, r.text)
            seen = set(re.findall(r'"model":\s*"([^"]+)"', r.text))
            assert seen == {name}, (path, name, seen)


def test_context_length_refusals_in_each_providers_own_words(gateway):
    """LiteLLM and LangChain recognise an overflow by the provider's wording; status and code as ever."""
    model = gateway.model(input="1", output="1", max_input_tokens=40)
    key = gateway.key()
    long = [{"role": "user", "content": "word " * 100}]
    r = _post(gateway, "/v1/chat/completions", key, {"model": model, "messages": long})
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["type"]) == (400, "context_length_exceeded", "invalid_request_error")
    assert re.fullmatch(r"This model's maximum context length is 40 tokens\. However, your messages resulted in "
                        r"\d+ tokens\. Please reduce the length of the messages\.", error["message"])
    r = _post(gateway, "/v1/messages", key, {"model": model, "max_tokens": 5, "messages": long})
    error = r.json()["error"]
    assert (r.status_code, error["type"]) == (400, "invalid_request_error")
    assert re.fullmatch(r"prompt is too long: \d+ tokens > 40 maximum", error["message"])
