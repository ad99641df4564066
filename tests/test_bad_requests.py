"""Bad input: a clear 400 naming the field (or 413 for size), in the OpenAI shape; nothing charged."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.money import to_micros


@pytest.fixture
def funded(gateway):
    model = gateway.model(input="2.5", output="10")
    user = gateway.user(balance="5")
    return model, user, gateway.key(user)


def _post(gateway, key, content: bytes | None = None, json=None, **kw) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", content=content, json=json,
                      headers={"Authorization": f"Bearer {key}", "content-type": "application/json"}, **kw)


def test_malformed_json_is_400(gateway, funded):
    model, user, key = funded
    r = _post(gateway, key, content=b'{"model": "x", "messages": [')
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "JSON" in r.json()["error"]["message"]
    assert gateway.balance(user) == to_micros("5")


def test_body_that_is_not_an_object_is_400(gateway, funded):
    _, _, key = funded
    assert _post(gateway, key, content=b"[1, 2]").status_code == 400


@pytest.mark.parametrize(
    "body, field",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "M"}, "messages"),
        ({"model": "M", "messages": "hello"}, "messages"),
        ({"model": "M", "messages": []}, "messages"),
        ({"model": "M", "messages": ["hi"]}, "messages[0]"),
        ({"model": "M", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "M", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}, "max_tokens"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    ],
)
def test_wrong_fields_are_400_naming_the_field(gateway, funded, body, field):
    model, user, key = funded
    body = {**body, "model": model} if body.get("model") == "M" else body
    r = _post(gateway, key, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field
    assert f"'{field}'" in err["message"]
    assert gateway.fake_openai.requests_for(model) == []
    assert gateway.balance(user) == to_micros("5")


def test_ten_megabyte_body_is_413(gateway, funded):
    model, user, key = funded
    big = b'{"model": "%s", "messages": [{"role": "user", "content": "' % model.encode() + b"a" * (10 * 1024 * 1024) + b'"}]}'
    r = _post(gateway, key, content=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert gateway.balance(user) == to_micros("5")
    assert gateway.fake_openai.requests_for(model) == []


def test_oversized_chunked_body_is_413(gateway, funded):
    model, user, key = funded

    def chunks():
        yield b'{"model": "x", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"a" * (1024 * 1024)
        yield b'"}]}'

    r = httpx.post(gateway.base_url + "/chat/completions", content=chunks(),
                   headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    assert r.status_code == 413
    assert gateway.balance(user) == to_micros("5")


def test_413_comes_before_401(gateway):
    r = httpx.post(gateway.base_url + "/chat/completions", content=b"x" * (9 * 1024 * 1024))
    assert r.status_code == 413


def test_401_comes_before_400(gateway):
    r = httpx.post(gateway.base_url + "/chat/completions", content=b"not json")
    assert r.status_code == 401


def test_completion_only_model_on_chat_is_400(gateway, funded):
    _, _, key = funded
    r = _post(gateway, key, json={"model": "gpt-3.5-turbo-instruct", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_unknown_route_is_404_in_family_shape(gateway):
    r = httpx.get(gateway.base_url + "/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
