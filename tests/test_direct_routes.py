"""The busiest routes skip the framework's layers (http/direct.py): their answers, refusals and
charges must be exactly what the full stack gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from llm_gateway.admission.keys import hash_key
from llm_gateway.config import Settings
from llm_gateway.http.app import create_app
from llm_gateway.runtime import Runtime
from llm_gateway.store import open_store
from tests.conftest import gateway_server


def _cases(gateway) -> dict[str, list]:
    """route -> request bodies (raw bytes or JSON): refusals of every kind, then priced calls served
    by the fake upstreams, plain and streamed."""
    gpt = gateway.model(input="2.5", output="10")
    claude = gateway.model(provider="anthropic", upstream_model="claude-haiku-4-5", input="3", output="15")
    embedding = gateway.model(kind="embedding", input="1")
    chat = {"model": gpt, "messages": [{"role": "user", "content": "hi"}]}
    messages = {"model": claude, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    return {
        "/v1/chat/completions": [
            b"", b"{not json", b"[1, 2]", {"messages": []}, {**chat, "model": "no-such-model"},
            {**chat, "messages": "hi"}, {**chat, "temperature": "hot"}, {**chat, "n": 0},
            {**chat, "model": embedding}, {**chat, "stream": True}, chat],
        "/v1/messages": [
            b"", b"{not json", {"model": claude}, {**messages, "max_tokens": -1}, {**messages, "model": "nope"},
            {**messages, "stream": True}, messages],
        "/v1/responses": [
            b"", b"[]", {"input": "hi"}, {"model": gpt, "input": 5},
            {"model": gpt, "input": "hi", "previous_response_id": "resp_nope"},
            {"model": gpt, "input": "hi", "store": False}],
        "/v1/embeddings": [
            b"", {"model": embedding}, {"model": gpt, "input": "hi"}, {"model": embedding, "input": ["a", "b"]}],
    }


# fields that differ between any two answers (ids, clocks), dropped before comparing
_VOLATILE = {"id", "created", "created_at", "request_id", "completed_at", "system_fingerprint"}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _answer(response: httpx.Response):
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = []  # every event in order, its data without ids and clocks
        for line in response.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(_stable(json.loads(line[6:])))
            elif line:
                events.append(line)
        return events
    return _stable(response.json())


@contextmanager
def _server(gateway, *, direct: bool) -> Iterator[str]:
    settings = gateway.runtime.settings
    runtime = Runtime.build(Settings(store_url=settings.store_url, env=settings.env, upstream_timeout=5.0),
                            open_store(settings.store_url))
    app = create_app(runtime=runtime)
    assert sorted(app.direct_paths) == sorted(ROUTES)
    if not direct:
        app.direct_paths = frozenset()  # every route through the full stack
    server = gateway_server(app)
    try:
        yield server.url
    finally:
        server.stop()


ROUTES = ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings")


@pytest.mark.parametrize("route", ROUTES)
def test_direct_routes_answer_as_the_full_stack_does(gateway, route):
    bodies = _cases(gateway)[route]
    key = gateway.key()
    user = gateway.store.get_key_by_hash(hash_key(key)).user_id
    answers = {}
    for direct in (True, False):
        before = gateway.balance(user)
        with _server(gateway, direct=direct) as url:
            got = []
            for body in bodies:
                kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
                r = httpx.post(url + route, headers={"Authorization": f"Bearer {key}", "Content-Type":
                               "application/json"}, timeout=30, **kwargs)
                got.append((r.status_code, r.headers.get("content-type", "").split(";")[0], _answer(r),
                            r.headers.get("vary"), "x-request-id" in r.headers))
            for bad in ("", "Bearer sk-not-a-key"):
                r = httpx.post(url + route, headers={"Authorization": bad}, json={}, timeout=30)
                got.append((r.status_code, _answer(r)))
            r = httpx.post(url + route, headers={"Authorization": f"Bearer {key}", "Origin": "https://app.example"},
                           json=bodies[-1], timeout=30)
            got.append((r.status_code, r.headers.get("access-control-allow-origin")))
            r = httpx.get(url + route, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            got.append((r.status_code, _answer(r)))
        answers[direct] = got, before - gateway.balance(user)
    direct_answers, direct_cost = answers[True]
    full_answers, full_cost = answers[False]
    assert direct_answers == full_answers
    assert direct_cost == full_cost > 0  # the served calls were charged, and alike
    statuses = [a[0] for a in direct_answers]
    assert 200 in statuses and 400 in statuses and 401 in statuses and 405 in statuses
