"""Pooled upstream connections the upstream has dropped: a call that picks one up is resent once on a
new connection when nothing of an answer had arrived, and never after (API.md 1: a healthy call next
to a failing upstream succeeds; nothing is sent twice that was answered).

These exercise the connection pools, which do not depend on the store: they run on SQLite only (moto
serves one request at a time, too slow for a hundred concurrent calls).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llm_gateway.money import to_micros
from tests.conftest import extra_gateway
from tests.fakes.raw_upstream import RawUpstream
from tests.test_upstream_failures import _sse_data

# ---------------------------------------------------------------------------------------------
# An upstream that closes a keep-alive connection right after answering an error leaves that
# connection in the gateway's pool for a moment; a call that picks it up must not fail for it.

@pytest.fixture
def raw_upstream():
    fake = RawUpstream().start()
    yield fake
    fake.stop()


def _raw_gateway(gateway, raw_upstream, pool):
    env = {**gateway.runtime.settings.env, "OPENAI_BASE_URL": raw_upstream.url + "/v1"}
    return extra_gateway(gateway, http_transport=pool, env=env)


async def _call_all(url: str, calls: list[tuple[str, dict]], stream: bool) -> list[httpx.Response]:
    """Send every (key, body) at once; the answers in the same order, streams read whole."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(key: str, body: dict) -> httpx.Response:
            r = await client.post(url + "/v1/chat/completions", json={**body, "stream": stream},
                                  headers={"Authorization": f"Bearer {key}"})
            await r.aread()
            return r

        return await asyncio.gather(*(one(key, body) for key, body in calls))


def _texts(model: str, prefix: str, n: int) -> list[dict]:
    return [{"model": model, "messages": [{"role": "user", "content": f"{prefix}-{i}"}]} for i in range(n)]


@pytest.mark.parametrize("pool", ["aiohttp", "httpx"])
@pytest.mark.parametrize("stream", [False, True])
def test_calls_beside_an_upstream_that_drops_connections_after_errors_all_succeed(gateway, raw_upstream,
                                                                                    pool, stream):
    ok = gateway.model(input="2.5", output="10", rpm={"regular": 1000})
    failing = gateway.model(input="2.5", output="10", rpm={"regular": 1000})
    raw_upstream.behaviors[failing] = "close_after_500"
    ok_user, failing_user = gateway.user(balance="5"), gateway.user(balance="5")
    ok_key, failing_key = gateway.key(ok_user), gateway.key(failing_user)
    first = [(failing_key, body) for body in _texts(failing, "first", 20)]
    calls = [call for pair in zip([(ok_key, body) for body in _texts(ok, "ok", 40)],
                                  [(failing_key, body) for body in _texts(failing, "failing", 40)]) for call in pair]
    with _raw_gateway(gateway, raw_upstream, pool) as other:
        # 20 failing calls first leave 20 connections in the gateway's pool that the upstream drops
        # as soon as they are used again; then 40 normal calls run beside 40 more failing ones.
        primed = asyncio.run(_call_all(other.url, first, stream))
        answers = asyncio.run(_call_all(other.url, calls, stream))
    ok_answers, failing_answers = answers[::2], primed + answers[1::2]
    assert [r.status_code for r in ok_answers] == [200] * 40, [r.text for r in ok_answers if r.status_code != 200]
    for r in ok_answers:
        if stream:
            assert _sse_data(r.text)[-1] == "[DONE]" and "error" not in r.text
        else:
            assert r.json()["choices"][0]["message"]["content"] == "Hello from the raw upstream"
    assert [r.status_code for r in failing_answers] == [502] * 60
    assert {r.json()["error"]["code"] for r in failing_answers} == {"upstream_error"}
    # Each failing call reached the upstream and got its 500: none failed on a dropped connection.
    assert {r.json()["error"]["message"] for r in failing_answers} == {"The openai provider failed (HTTP 500)."}
    received = raw_upstream.received_texts()
    assert sorted(received) == sorted(body["messages"][0]["content"] for _, body in first + calls)
    # Money: a failed call charges nothing; a normal one exactly what the upstream reported.
    assert gateway.balance(failing_user) == to_micros("5")
    failed = gateway.store.list_usage(failing_user, limit=100)
    assert failed.total == 60 and {r.cost for r in failed.records} == {0}
    charged = gateway.store.list_usage(ok_user, limit=100)
    assert charged.total == 40 and {(r.input_tokens, r.output_tokens, r.cost) for r in charged.records} == {(11, 7, 98)}
    assert gateway.balance(ok_user) == to_micros("5") - 40 * 98


# httpcore reports an end of stream inside an answer's head exactly as one before any byte ("Server
# disconnected without sending a response."), so HttpxPool cannot tell them apart and would resend a
# head cut: that pair is not claimed, so not generated. aiohttp tells the two apart.
@pytest.mark.parametrize("pool, cut", [("aiohttp", "head"), ("aiohttp", "body"), ("httpx", "body")])
@pytest.mark.parametrize("stream", [False, True])
def test_a_connection_dropped_after_part_of_an_answer_is_not_resent(gateway, raw_upstream, pool, stream, cut):
    ok, cut_model = gateway.model(input="2.5", output="10"), gateway.model(input="2.5", output="10")
    raw_upstream.behaviors[cut_model] = {
        "head": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-le",
        "body": b"HTTP/1.1 200 OK\r\ncontent-type: " + (b"text/event-stream" if stream else b"application/json")
                + b"\r\ncontent-length: 400\r\n\r\n" + (b"data: {\"id\"" if stream else b"{\"id\": "),
    }[cut]
    user = gateway.user(balance="5")
    key = gateway.key(user)
    with _raw_gateway(gateway, raw_upstream, pool) as other:
        first = asyncio.run(_call_all(other.url, [(key, _texts(ok, "first", 1)[0])], stream))
        assert first[0].status_code == 200  # the connection the next call reuses
        r = asyncio.run(_call_all(other.url, [(key, _texts(cut_model, "cut", 1)[0])], stream))[0]
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_error"
    assert raw_upstream.received_texts() == ["first-0", "cut-0"]  # sent once, on the reused connection
    assert gateway.balance(user) == to_micros("5") - 98
