"""A bounded fuzz of every route: valid bodies mutated at every field (and whole random bodies)
never get a 5xx, every refusal is in its route family's shape, and a refused request never moves
money.

Hypothesis builds the requests: for each route a valid body, then one mutation — a field replaced
by an arbitrary JSON value (extreme numbers, deep nesting, wrong types), a field removed, an unknown
field added — or a body that is not JSON at all, with or without a form Content-Type. Runs on both
stores; the examples per route are bounded so the module takes seconds.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_gateway import accounts
from tests.platform_client import ADMIN

EXAMPLES = {"sqlite": 120, "dynamodb": 30}

# Values that broke gateways before: huge and negative numbers, non-finite text, deep nesting.
EXTREMES = st.sampled_from([
    0, -1, 1, 2**31, 2**53 + 1, 2**62, 2**63 - 1, -(2**63), 10**13, 1e308, -1e308, 1e-308, 0.5,
    "", " ", "0", "-5", "1e400", "NaN", "Infinity", "true", "null", "[]", "{}", "x" * 2000, "\u0000", "😀",
    True, False, None, [], {}, [[[[[[[[[[]]]]]]]]]], {"type": "text"}, [{"type": "hologram"}],
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30) | EXTREMES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every field and element path inside a body."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(body: Any, path: tuple, new: Any, delete: bool = False) -> Any:
    body = json.loads(json.dumps(body))
    target = body
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return body


@st.composite
def mutated(draw, base: dict) -> tuple[str, Any]:
    """("json", body) or ("raw", (content_type, bytes))."""
    choice = draw(st.integers(0, 9))
    paths = _paths(base)
    if choice <= 4 and paths:
        return "json", _replace(base, draw(st.sampled_from(paths)), draw(JSON_VALUES))
    if choice == 5 and paths:
        return "json", _replace(base, draw(st.sampled_from(paths)), None, delete=True)
    if choice == 6:
        return "json", {**base, draw(st.text(min_size=1, max_size=12)): draw(JSON_VALUES)}
    if choice == 7:
        return "json", {**base, draw(st.sampled_from(sorted(base) or ["x"])): _deep(draw(st.sampled_from([200, 300])))}
    if choice == 8:
        return "json", draw(JSON_VALUES)
    content_type = draw(st.sampled_from([None, "application/json", "application/x-www-form-urlencoded",
                                         "multipart/form-data; boundary=b", "text/plain"]))
    raw = draw(st.binary(max_size=64) | st.sampled_from([b"a=1&b", b"=", b"--b\r\n", b"{", b"[1,2]", b"\xff"]))
    return "raw", (content_type, raw)


def _check_shape(family: str, r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code < 400:
        return
    body = r.json()
    if family == "openai":
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], body
    elif family == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    else:
        assert body["statusCode"] == r.status_code and body["data"] is None, body
        assert body["message"] and body["errorType"], body


@pytest.fixture
def world(gateway):
    """A funded user with an admin key, a priced model on the fake upstream and two spare keys."""
    model = gateway.model(input="1", output="2", rpm={"regular": 1_000_000})
    user = gateway.user(balance="1000")
    admin = gateway.key(user, is_admin=True)
    spare, _ = accounts.issue_key(gateway.store, user, remark="spare")
    doomed, _ = accounts.issue_key(gateway.store, user, remark="doomed")
    media = {kind: gateway.model(kind=kind, rpm={"regular": 1_000_000}, **prices) for kind, prices in (
        ("embedding", {"input": "1"}), ("image", {"per_image": {"*": "0.01"}}), ("speech", {"per_1m_chars": "15"}))}
    # the platform's priced services, on the mock (no account) and priced, for the length of the test
    services = {"azure-tts": {"per_1m_chars": "15"}, "google-search": {"per_request": "0.005"},
                "serper-search": {"per_request": "0.001"}}
    for name, prices in services.items():
        gateway.store.set_model_override(name, {"provider": "mock", "rpm": {"regular": 1_000_000}, **prices})
    gateway.runtime.catalogs.refresh()
    yield {"model": model, "user": user, "key": admin, "spare": spare.key_id, "doomed": doomed.key_id, **media}
    for name in services:
        gateway.store.delete_model_override(name)
    gateway.runtime.catalogs.refresh()


def _routes(w: dict) -> list[tuple[str, str, str, dict]]:
    """(method, path, family, valid body) for every route."""
    m = w["model"]
    chat = {"model": m, "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": [{"type": "text", "text": "hi"},
                                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
                                     {"role": "assistant", "content": None, "tool_calls": [
                                         {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                     {"role": "tool", "tool_call_id": "c", "content": "ok"}],
            "max_tokens": 5, "temperature": 0.5, "stop": ["x"], "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    messages = {"model": m, "max_tokens": 5, "system": "be brief", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                          {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
    return [
        ("POST", "/v1/chat/completions", "openai", chat),
        ("POST", "/v1/completions", "openai", {"model": m, "prompt": ["hi", "there"], "max_tokens": 5, "n": 1}),
        ("POST", "/v1/claude/web/completion", "openai", {"model": m, "prompt": "hi", "stream": False}),
        ("POST", "/v1/messages", "anthropic", messages),
        ("POST", "/v1/messages/count_tokens", "anthropic", {k: v for k, v in messages.items() if k != "max_tokens"}),
        ("POST", "/v1/complete", "anthropic", {"model": m, "prompt": "\n\nHuman: hi\n\nAssistant:",
                                               "max_tokens_to_sample": 5, "stop_sequences": ["x"]}),
        ("POST", f"{ADMIN}/new-api-token", "platform", {"remark": "f", "permissions": ["mock-*"], "rpm": 5,
                                                         "max_fee": "1.5", "expired_at": "2031-01-01T00:00:00Z"}),
        ("POST", f"{ADMIN}/update-api-token", "platform", {"key_id": w["spare"], "remark": "g", "rpm": 9,
                                                            "max_fee": 2, "is_disabled": False}),
        ("POST", f"{ADMIN}/del-api-token", "platform", {"key_id": w["doomed"]}),
        ("GET", "/api/v1/user/usage", "platform", {"since": "2026-01-01", "model": m, "page": 1, "pageSize": 5}),
        ("POST", "/v1/embeddings", "openai", {"model": w["embedding"], "input": ["a", "b"], "dimensions": 4}),
        ("POST", "/v1/images/generations", "openai", {"model": w["image"], "prompt": "x", "n": 1,
                                                        "size": "1024x1024", "quality": "standard"}),
        ("POST", "/v1/audio/speech", "openai", {"model": w["speech"], "input": "hi", "voice": "alloy",
                                                 "response_format": "wav", "speed": 1.0}),
        ("POST", "/api/v1/openapi/azure/tts/v1", "platform", {"text": "hello", "voice": "en-US-AvaMultilingualNeural"}),
        ("GET", "/api/v1/openapi/search/google-search/v1", "platform", {"q": "cats", "num": 3, "start": 1}),
        ("POST", "/api/v1/openapi/search/serper/v1", "platform", {"q": "cats", "gl": "us", "num": 5, "cache": 60}),
    ]


ROUTE_IDS = ["chat", "completions", "claude_web", "messages", "count_tokens", "complete", "new_token",
             "update_token", "del_token", "usage", "embeddings", "images", "speech", "azure_tts", "google_search",
             "serper"]


@pytest.mark.parametrize("route", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_no_route_answers_5xx_or_moves_money_on_bad_input(gateway, world, route, request):
    store_kind = request.node.callspec.params["gateway"]
    method, path, family, base = _routes(world)[route]
    headers = {"Authorization": f"Bearer {world['key']}"}
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert _send(client, method, path, headers, ("json", base)).status_code < 300  # the base is valid
        balance = [gateway.balance(world["user"])]

        @settings(max_examples=EXAMPLES[store_kind], deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(mutated(base))
        def fuzz(case):
            r = _send(client, method, path, headers, case)
            _check_shape(family, r)
            now = gateway.balance(world["user"])
            if r.status_code >= 400:
                assert now == balance[0], (case, r.status_code, r.text[:300])
            balance[0] = now

        fuzz()


def _send(client: httpx.Client, method: str, path: str, headers: dict, case: tuple[str, Any]) -> httpx.Response:
    kind, payload = case
    if method == "GET":
        params = payload if kind == "json" and isinstance(payload, dict) else {"q": repr(payload)[:50]}
        params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        return client.get(path, params=params, headers=headers)
    if kind == "json":
        return client.post(path, content=json.dumps(payload).encode(), headers={**headers,
                           "content-type": "application/json"})
    content_type, raw = payload
    extra = {"content-type": content_type} if content_type else {}
    return client.post(path, content=raw, headers={**headers, **extra})
