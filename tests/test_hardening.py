"""Bad input never 500s and never corrupts a tenant's data: one regression test per defect found by
the adversarial run, each asserting the refusal's status and shape and that nothing changed."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.money import to_micros
from tests.platform_client import ADMIN, data, post, refusal


def admin_of(gateway) -> tuple[str, str]:
    user_id = gateway.user(balance="5")
    return user_id, gateway.key(user_id, is_admin=True)


def openai_refusal(r: httpx.Response, param: str) -> str:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    assert f"'{param}'" in err["message"]
    return err["message"]


def anthropic_refusal(r: httpx.Response, path: str) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    assert body["error"]["message"].startswith(path + ":"), body
    return body["error"]["message"]


@pytest.fixture
def funded(gateway):
    model = gateway.model(input="2.5", output="10", max_output_tokens=8192)
    user = gateway.user(balance="5")
    return model, user, gateway.key(user)


def untouched(gateway, model: str, user: str, fake=None) -> None:
    assert gateway.balance(user) == to_micros("5")
    assert (fake or gateway.fake_openai).requests_for(model) == []


def chat(gateway, key: str, body: dict) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def messages(gateway, key: str, body: dict, path: str = "/messages") -> httpx.Response:
    return httpx.post(gateway.base_url + path, json=body, headers={"x-api-key": key})


# --- 1. time and money ranges: a refused key is never stored --------------------------------------

@pytest.mark.parametrize("fields, named", [
    ({"expired_at": 1e308}, "expired_at"),
    ({"expired_at": 1e15}, "expired_at"),  # milliseconds: the year 33658
    ({"expired_at": "1e400"}, "expired_at"),
    ({"expired_at": -5}, "expired_at"),
    ({"max_fee": 1e308}, "max_fee"),
    ({"max_fee": "1e400"}, "max_fee"),
    ({"max_fee": "1e400000000"}, "max_fee"),
    ({"rpm": 2**63}, "rpm"),
])
def test_out_of_range_key_fields_are_400_and_store_nothing(gateway, fields, named):
    user_id, admin = admin_of(gateway)
    message = refusal(post(gateway.url, f"{ADMIN}/new-api-token", admin, fields), 400, "invalid_request_error")
    assert f"'{named}'" in message
    assert len(gateway.store.list_keys(user_id)) == 1
    target = gateway.store.list_keys(user_id)[0]
    message = refusal(post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key_id": target.key_id, **fields}),
                      400, "invalid_request_error")
    assert gateway.store.get_key(target.key_id) == target
    assert len(data(post(gateway.url, f"{ADMIN}/get-api-tokens", admin))) == 1


def test_a_key_stored_with_an_unprintable_time_still_lists(gateway):
    """A store written before the range checks may hold such a key: listing it must not break."""
    user_id, admin = admin_of(gateway)
    target = gateway.store.list_keys(user_id)[0]
    gateway.store.update_key(target.key_id, expired_at=1e308)
    listed = data(post(gateway.url, f"{ADMIN}/get-api-tokens", admin))
    assert listed[0]["expired_at"] == "9999-12-31T23:59:59Z"


# --- 2 and 6. malformed model-call bodies: 400 naming the field, nothing charged --------------------

def _chat_body(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("messages_, param", [
    ([{"role": "assistant", "content": None, "tool_calls": 5}], "messages[0].tool_calls"),
    ([{"role": "assistant", "content": None, "tool_calls": ["abc"]}], "messages[0].tool_calls[0]"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"function": "f"}]}], "messages[0].tool_calls[0].function"),
    ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "hologram", "data": "x"}]}], "messages[0].content[0]"),
    ([{"role": "user", "content": ["just text"]}], "messages[0].content[0]"),
    ([{"role": "user", "content": [{"type": "text", "text": 7}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}], "messages[0].content[0].image_url"),
])
def test_malformed_chat_messages_are_400_naming_the_field(gateway, funded, messages_, param):
    model, user, key = funded
    message = openai_refusal(chat(gateway, key, {"model": model, "messages": messages_}), param)
    if param == "messages[0].content[0]" and "hologram" in str(messages_):
        assert "'hologram'" in message
    untouched(gateway, model, user)


@pytest.mark.parametrize("max_tokens", [10**13, 2**62, 2**63 - 1, 8193])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_output_above_the_models_cap_is_400_naming_the_cap(gateway, funded, field, max_tokens):
    model, user, key = funded
    message = openai_refusal(chat(gateway, key, _chat_body(model, **{field: max_tokens})), field)
    assert "8192" in message
    untouched(gateway, model, user)


def test_output_at_the_cap_is_served(gateway, funded):
    model, user, key = funded
    assert chat(gateway, key, _chat_body(model, max_tokens=8192)).status_code == 200


@pytest.mark.parametrize("content, path", [
    ([{"type": "tool_use", "id": "t1", "name": 5, "input": {}}], "messages.0.content.0.name"),
    ([{"type": "thinking", "thinking": 5, "signature": "s"}], "messages.0.content.0.thinking"),
    ([{"type": "hologram"}], "messages.0.content.0"),
    ([5], "messages.0.content.0"),
    ([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": None}]}],
     "messages.0.content.0.content.0.text"),
])
@pytest.mark.parametrize("route", ["/messages", "/messages/count_tokens"])
def test_malformed_message_blocks_are_400_naming_the_field(gateway, funded, route, content, path):
    model, user, key = funded
    body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    anthropic_refusal(messages(gateway, key, body, route), path)
    untouched(gateway, model, user)


def test_message_role_outside_user_and_assistant_is_400(gateway, funded):
    model, user, key = funded
    body = {"model": model, "max_tokens": 10, "messages": [{"role": "wizard", "content": "hi"}]}
    assert "'user' or 'assistant'" in anthropic_refusal(messages(gateway, key, body), "messages.0.role")
    untouched(gateway, model, user)


@pytest.mark.parametrize("max_tokens", [10**13, 2**63 - 1, 8193])
def test_messages_output_above_the_models_cap_is_400(gateway, funded, max_tokens):
    model, user, key = funded
    r = messages(gateway, key, {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "8192" in r.json()["error"]["message"] and "max_tokens" in r.json()["error"]["message"]
    untouched(gateway, model, user)


def test_legacy_routes_refuse_output_above_the_cap(gateway, funded):
    model, user, key = funded
    r = httpx.post(gateway.base_url + "/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": model, "prompt": "x", "max_tokens": 10**13})
    openai_refusal(r, "max_tokens")
    r = messages(gateway, key, {"model": model, "prompt": "\n\nHuman: x\n\nAssistant:",
                                "max_tokens_to_sample": 2**63 - 1}, "/complete")
    assert r.status_code == 400 and "max_tokens_to_sample" in r.json()["error"]["message"]
    untouched(gateway, model, user)


def test_a_body_nested_deeper_than_the_gateway_relays_is_400(gateway, funded):
    model, user, key = funded
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    r = chat(gateway, key, _chat_body(model, metadata={"deep": deep}))
    assert r.status_code == 400 and "nested" in r.json()["error"]["message"]
    untouched(gateway, model, user)


def test_a_body_nested_within_the_limit_is_relayed(gateway, funded):
    model, user, key = funded
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    assert chat(gateway, key, _chat_body(model, user="u", logit_bias={}, metadata={"a": "b"}, prediction=deep)
                ).status_code == 200
    assert gateway.fake_openai.requests_for(model)[-1].body["prediction"] == deep


# --- 3. the body's meaning never depends on a wrong Content-Type -----------------------------------

@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_is_json_whatever_its_content_type(gateway, content_type):
    user_id, admin = admin_of(gateway)
    headers = {"Authorization": f"Bearer {admin}"}
    if content_type:
        headers["content-type"] = content_type
    r = httpx.post(gateway.url + f"{ADMIN}/new-api-token", headers=headers,
                   content=b'{"remark": "restricted", "permissions": ["mock-gpt"], "rpm": 7}')
    created = data(r)
    assert created["permissions"] == ["mock-gpt"] and created["rpm"] == 7 and created["remark"] == "restricted"


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"model": "mock-gpt", "prompt": "hi"}),
    ("/v1/claude/web/completion", {"model": "mock-gpt", "prompt": "hi"}),
])
def test_legacy_routes_read_a_json_body_sent_as_a_form(gateway, path, body):
    import json

    r = httpx.post(gateway.url + path, headers={"Authorization": f"Bearer {gateway.key()}",
                                                "content-type": "application/x-www-form-urlencoded"},
                   content=json.dumps(body).encode())
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("content_type, content", [
    ("multipart/form-data; boundary=xyz", b"this is not multipart at all"),
    ("multipart/form-data", b"--xyz\r\nContent-Disposition: form-data; name=\"remark\"\r\n\r\nx\r\n--xyz--\r\n"),
    (None, b"remark"),
    ("application/x-www-form-urlencoded", b"\xff\xfe=1"),
    ("application/json", b"{\"remark\": "),
])
def test_a_body_that_is_neither_json_nor_a_form_is_400_and_creates_nothing(gateway, content_type, content):
    user_id, admin = admin_of(gateway)
    headers = {"Authorization": f"Bearer {admin}"}
    if content_type:
        headers["content-type"] = content_type
    r = httpx.post(gateway.url + f"{ADMIN}/new-api-token", headers=headers, content=content)
    refusal(r, 400, "invalid_request_error")
    assert len(gateway.store.list_keys(user_id)) == 1


@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
def test_unknown_fields_on_platform_routes_are_400_naming_them(gateway, encoding):
    user_id, admin = admin_of(gateway)
    message = refusal(post(gateway.url, f"{ADMIN}/new-api-token", admin, {"remark": "x", "permisions": "gpt-4o"},
                           encoding), 400, "invalid_request_error")
    assert "'permisions'" in message
    assert len(gateway.store.list_keys(user_id)) == 1


def test_a_request_its_model_cannot_price_is_400_not_500(gateway):
    """A chat model priced per pool only (a catalog mistake or a task model on chat) has no price for
    a plain call: the request is refused before anything is reserved."""
    model = gateway.model(per_request={"FAST": "0.05"})
    user = gateway.user(balance="5")
    r = chat(gateway, gateway.key(user), _chat_body(model))
    assert r.status_code == 400 and r.json()["error"]["param"] == "model" and "price" in r.json()["error"]["message"]
    untouched(gateway, model, user)
