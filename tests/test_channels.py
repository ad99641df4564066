"""Upstream channels and failover (API.md 7), against two fake OpenAI upstreams on 127.0.0.1.

Each test defines its own channels for its own model (unique names), so tests share the gateway
but not their channels, cool-downs or balances. A channel's upstream model id (`map`) picks the
fake's behaviour, so a channel fails or answers as the test says.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter as Tally

import httpx
import pytest

from llm_gateway.catalog import Catalog, ModelSpec, default_catalog
from llm_gateway.catalog.channels import Router, parse_channels
from llm_gateway.config import Settings
from llm_gateway.money import to_micros
from llm_gateway.providers import Providers
from tests.conftest import extra_gateway
from tests.fakes.anthropic_upstream import ANTHROPIC_OPERATOR_KEY
from tests.fakes.openai_upstream import OPERATOR_KEY, FakeOpenAI
from tests.fakes.server import ServerThread, free_port

SECOND_KEY = "sk-second-upstream-credential-111111111111111111"
# The credentials channels name: what a deployment would set in its environment or secret.
CHANNEL_ENV = {"CH_KEY_A": OPERATOR_KEY, "CH_KEY_B": SECOND_KEY, "CH_AZURE_KEY": OPERATOR_KEY,
               "CH_CLAUDE_KEY": ANTHROPIC_OPERATOR_KEY}


@pytest.fixture(scope="module")
def second_openai():
    fake = FakeOpenAI(api_key=SECOND_KEY)
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture(scope="module")
def gw(gateway):
    """A gateway whose environment holds the channels' credentials; cool-down 30 s, 3 attempts."""
    with extra_gateway(gateway, env={**gateway.runtime.settings.env, **CHANNEL_ENV}, upstream_timeout=1.0) as g:
        yield g


def _channels(gw, model: str, *specs: dict) -> list[str]:
    """Store one channel per spec serving `model` (each named uniquely), and see them at once."""
    names = []
    for spec in specs:
        name = f"{spec.pop('tag', 'ch')}-{uuid.uuid4().hex[:6]}"
        gw.store.put_channel(name, {"models": [model], **spec}, exists=False)
        names.append(name)
    gw.forget_caches()
    return names


def _healthy(second_openai, model: str, **fields) -> dict:
    """A channel on the second upstream, its own upstream id answering normally."""
    return {"tag": "ok", "provider": "openai", "base_url": second_openai.url + "/v1", "api_key_env": "CH_KEY_B",
            "map": {model: model + "-b"}, **fields}


def _failing(gw, model: str, how: str, **fields) -> dict:
    """A channel that fails `how`: an HTTP status from the first upstream, or a refused connection."""
    if how == "refused":
        return {"tag": "bad", "provider": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "api_key_env": "CH_KEY_A", **fields}
    gw.fake_openai.behaviors[model + "-a"] = {"status": int(how), "retry_after": 7} if how == "429" else \
        {"status": int(how)}
    return {"tag": "bad", "provider": "openai", "base_url": gw.fake_openai.url + "/v1", "api_key_env": "CH_KEY_A",
            "map": {model: model + "-a"}, **fields}


def _chat(gw, key: str, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


def _records(gw, user: str):
    return gw.store.list_usage(user).records


def _text(r: httpx.Response, stream: bool) -> str:
    if not stream:
        return r.json()["choices"][0]["message"]["content"]
    import json
    out = []
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("how", ["500", "503", "refused", "429", "401"])
def test_a_failing_channel_fails_over_to_the_next_and_the_request_is_charged_once(gw, second_openai, how, stream):
    model = gw.model(input="2.5", output="10")
    bad, good = _channels(gw, model, _failing(gw, model, how, priority=1), _healthy(second_openai, model))
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model, stream)
    assert r.status_code == 200, r.text
    assert _text(r, stream) == "Hello from the fake upstream"
    assert len(second_openai.requests_for(model + "-b")) == 1
    if how != "refused":
        assert len(gw.fake_openai.requests_for(model + "-a")) == 1
    [record] = _records(gw, user)  # one settlement, by the channel that answered, after two attempts
    assert (record.channel, record.attempts, record.status) == (good, 2, "ok")
    assert record.cost > 0 and gw.balance(user) == to_micros("5") - record.cost
    # The client's key never goes upstream; the channel's own credential does.
    assert second_openai.requests_for(model + "-b")[0].headers["authorization"] == f"Bearer {SECOND_KEY}"
    assert bad not in r.text and good not in r.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_error_is_answered_and_never_retried_on_another_channel(gw, second_openai, stream):
    model = gw.model(input="2.5", output="10")
    _channels(gw, model, _failing(gw, model, "400", priority=1), _healthy(second_openai, model))
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model, stream)
    assert r.status_code == 400
    assert second_openai.requests_for(model + "-b") == []
    assert gw.balance(user) == to_micros("5")
    [record] = _records(gw, user)
    assert (record.attempts, record.status, record.cost) == (1, "error", 0)


def test_a_stream_that_breaks_after_its_first_byte_is_not_moved_to_another_channel(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    gw.fake_openai.behaviors[model + "-a"] = {"fail_after": 2, "text": "one two three four five"}
    _channels(gw, model, {"tag": "first", "provider": "openai", "base_url": gw.fake_openai.url + "/v1",
                          "api_key_env": "CH_KEY_A", "map": {model: model + "-a"}, "priority": 1},
              _healthy(second_openai, model))
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model, stream=True)
    assert r.status_code == 200
    assert _text(r, True) == "one two "  # what the first channel sent, then the stream's error
    assert "upstream_error" in r.text
    assert second_openai.requests_for(model + "-b") == []
    [record] = _records(gw, user)
    assert (record.attempts, record.status) == (1, "upstream_error")
    assert gw.balance(user) == to_micros("5") - record.cost


def test_a_failed_channel_cools_down_and_is_skipped_by_the_next_requests(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    _channels(gw, model, _failing(gw, model, "503", priority=1), _healthy(second_openai, model))
    key = gw.key(gw.user(balance="5"))
    for _ in range(3):
        assert _chat(gw, key, model).status_code == 200
    assert len(gw.fake_openai.requests_for(model + "-a")) == 1  # tried once, then cooling for 30 s
    assert len(second_openai.requests_for(model + "-b")) == 3


def test_a_429s_retry_after_outlasts_a_shorter_cool_down(gateway, second_openai):
    with extra_gateway(gateway, env={**gateway.runtime.settings.env, **CHANNEL_ENV}, channel_cooldown=0.0) as g:
        model = g.model(input="2.5", output="10")
        _channels(g, model, _failing(g, model, "429", priority=1), _healthy(second_openai, model))
        key = g.key(g.user(balance="5"))
        assert _chat(g, key, model).status_code == 200
        assert _chat(g, key, model).status_code == 200
        assert len(g.fake_openai.requests_for(model + "-a")) == 1  # Retry-After 7 s, not the 0 s cool-down
        # A failure with no Retry-After cools for the setting's 0 s: it is tried again.
        other = g.model(input="2.5", output="10")
        _channels(g, other, _failing(g, other, "500", priority=1), _healthy(second_openai, other))
        assert _chat(g, key, other).status_code == 200
        assert _chat(g, key, other).status_code == 200
        assert len(g.fake_openai.requests_for(other + "-a")) == 2


def test_a_channel_slower_than_the_timeout_fails_over(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    gw.fake_openai.behaviors[model + "-a"] = {"delay": 2.5}
    _channels(gw, model, {"tag": "slow", "provider": "openai", "base_url": gw.fake_openai.url + "/v1",
                          "api_key_env": "CH_KEY_A", "map": {model: model + "-a"}, "priority": 1},
              _healthy(second_openai, model))
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model)
    assert r.status_code == 200
    [record] = _records(gw, user)
    assert record.attempts == 2


def test_attempts_stop_at_the_maximum_and_the_last_failure_is_answered(gateway, second_openai):
    with extra_gateway(gateway, env={**gateway.runtime.settings.env, **CHANNEL_ENV}, max_attempts=2) as g:
        model = g.model(input="2.5", output="10")
        names = _channels(g, model, _failing(g, model, "500", priority=3), _failing(g, model, "refused", priority=2),
                          _healthy(second_openai, model))
        user = g.user(balance="5")
        r = _chat(g, g.key(user), model)
        assert r.status_code == 502  # the refused connection, the second and last attempt
        assert r.json()["error"]["code"] == "upstream_error"
        assert second_openai.requests_for(model + "-b") == []  # the third channel was never reached
        assert not any(name in r.text for name in names) and "127.0.0.1" not in r.text
        [record] = _records(g, user)
        assert (record.channel, record.attempts, record.status, record.cost) == (names[1], 2, "error", 0)
        assert g.balance(user) == to_micros("5")


def test_a_disabled_channel_is_not_used_and_a_model_with_none_enabled_is_502(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    [name] = _channels(gw, model, _healthy(second_openai, model, enabled=False))
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model)
    assert r.status_code == 502 and name not in r.text
    assert gw.balance(user) == to_micros("5")
    gw.store.put_channel(name, {"enabled": True}, exists=True)
    gw.forget_caches()
    assert _chat(gw, gw.key(user), model).status_code == 200


def test_the_log_line_names_the_channel_and_the_attempts(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    bad, good = _channels(gw, model, _failing(gw, model, "500", priority=1), _healthy(second_openai, model))
    seen: list[dict] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append({"msg": record.getMessage(), **getattr(record, "fields", {})})

    handler = Keep()
    logging.getLogger("llm_gateway").addHandler(handler)
    try:
        assert _chat(gw, gw.key(gw.user(balance="5")), model).status_code == 200
        for _ in range(500):  # the request's line is written once its answer has gone out
            lines = [s for s in seen if s.get("model") == model and s["msg"] == "request"]
            if lines:
                break
            time.sleep(0.01)
    finally:
        logging.getLogger("llm_gateway").removeHandler(handler)
    [line] = lines
    assert (line["channel"], line["attempts"]) == (good, 2)
    assert not any(OPERATOR_KEY in str(s) or SECOND_KEY in str(s) for s in seen)


def test_a_model_without_channels_keeps_its_environment_provider(gw):
    model = gw.model(input="2.5", output="10")
    user = gw.user(balance="5")
    assert _chat(gw, gw.key(user), model).status_code == 200
    [record] = _records(gw, user)
    assert (record.channel, record.attempts) == ("openai", 1)  # the implicit channel
    assert gw.fake_openai.requests_for(model)[0].headers["authorization"] == f"Bearer {OPERATOR_KEY}"


def test_the_users_own_usage_listing_does_not_show_channels(gw, second_openai):
    model = gw.model(input="2.5", output="10")
    [name] = _channels(gw, model, _healthy(second_openai, model))
    key = gw.key(gw.user(balance="5"))
    assert _chat(gw, key, model).status_code == 200
    r = httpx.get(gw.url + "/api/v1/user/usage", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and model in r.text
    assert name not in r.text and "channel" not in r.text and "attempts" not in r.text


# --- Azure OpenAI and Anthropic as channels -------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_an_azure_channel_calls_its_deployment_with_api_key_and_version(gw, stream):
    model = gw.model(input="2.5", output="10")
    deployment = "dep-" + uuid.uuid4().hex[:6]
    _channels(gw, model, {"provider": "azure", "base_url": gw.fake_openai.url, "api_key_env": "CH_AZURE_KEY",
                          "api_version": "2025-01-01-preview", "map": {model: deployment}})
    user = gw.user(balance="5")
    r = _chat(gw, gw.key(user), model, stream)
    assert r.status_code == 200, r.text
    assert _text(r, stream) == "Hello from the fake upstream"
    [sent] = gw.fake_openai.requests_for(deployment)
    assert sent.path == f"/openai/deployments/{deployment}/chat/completions"
    assert sent.query == "api-version=2025-01-01-preview"
    assert sent.headers["api-key"] == OPERATOR_KEY and "authorization" not in sent.headers
    [record] = _records(gw, user)
    assert record.cost > 0 and gw.balance(user) == to_micros("5") - record.cost


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_channel_serves_claude_on_both_api_shapes(gw, route, stream):
    model = gw.model(provider="anthropic", input="3", output="15")
    upstream = "claude-" + uuid.uuid4().hex[:6]
    _channels(gw, model, {"provider": "anthropic", "base_url": gw.fake_anthropic.url,
                          "api_key_env": "CH_CLAUDE_KEY", "map": {model: upstream}})
    user = gw.user(balance="5")
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    r = httpx.post(gw.url + route, json=body, headers={"Authorization": f"Bearer {gw.key(user)}"}, timeout=30)
    assert r.status_code == 200, r.text
    if not stream:
        answer = r.json()
        text = answer["content"][0]["text"] if route == "/v1/messages" else answer["choices"][0]["message"]["content"]
        assert text == "Hello from the fake Claude"
    else:
        assert ("event: message_stop" if route == "/v1/messages" else "data: [DONE]") in r.text
    [sent] = gw.fake_anthropic.requests_for(upstream)
    assert sent.headers["x-api-key"] == ANTHROPIC_OPERATOR_KEY
    [record] = _records(gw, user)
    assert record.input_tokens == 13 and record.output_tokens == 9
    assert gw.balance(user) == to_micros("5") - record.cost


# --- choice, without a server ----------------------------------------------------------------------

def _router(raw: dict) -> tuple[Router, Catalog, ModelSpec]:
    catalog = Catalog(default_catalog())
    catalog.channels = parse_channels(raw)
    env = {"K": "x"}
    return Router(Providers(Settings(env=env)), cooldown=30), catalog, catalog.get("gpt-4o")


def test_weights_share_traffic_within_a_priority_in_proportion():
    router, catalog, spec = _router({
        "a": {"provider": "openai", "models": ["gpt-4o"], "weight": 3},
        "b": {"provider": "openai", "models": ["gpt-*"], "weight": 1},
        "low": {"provider": "openai", "models": ["gpt-4o"], "priority": -1, "weight": 100},
    })
    route = router.route(catalog, spec)
    random.seed(1234)
    firsts = Tally(next(route.order({}, 3)).channel.name for _ in range(4000))
    assert set(firsts) == {"a", "b"}  # the lower priority only after both have failed
    assert 0.70 < firsts["a"] / 4000 < 0.80  # 3:1, with room for chance
    order = [h.channel.name for h in route.order({}, 3)]
    assert sorted(order[:2]) == ["a", "b"] and order[2] == "low"


def test_a_cooling_channel_is_skipped_and_all_cooling_are_still_tried():
    router, catalog, spec = _router({"a": {"provider": "openai", "models": ["gpt-4o"], "priority": 1},
                                     "b": {"provider": "openai", "models": ["gpt-4o"]}})
    route = router.route(catalog, spec)
    soon = time.monotonic() + 60
    assert [h.channel.name for h in route.order({"a": soon}, 3)] == ["b"]
    assert [h.channel.name for h in route.order({"a": soon + 5, "b": soon}, 3)] == ["b", "a"]
    assert [h.channel.name for h in route.order({}, 1)] == ["a"]


def test_a_model_with_one_channel_has_its_route_ready_without_choice():
    router, catalog, spec = _router({"only": {"provider": "openai", "models": ["gpt-4o"], "map": {"gpt-4o": "x"}}})
    route = router.route(catalog, spec)
    assert route.single is not None and route.single.model == "x"
    assert router.route(catalog, spec) is route  # memoised per catalog
    assert route.single.body({"model": spec.upstream_model, "n": 1}) == {"model": "x", "n": 1}
