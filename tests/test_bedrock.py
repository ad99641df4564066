"""AWS Bedrock as a channel (API.md 7), against a fake Bedrock runtime that checks SigV4 with botocore.

Claude goes through InvokeModel / InvokeModelWithResponseStream with Anthropic's body, on both API
shapes; another model through Converse / ConverseStream. The credentials come from botocore's chain
(here the environment), never from the store.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from llm_gateway.money import to_micros
from tests.conftest import extra_gateway
from tests.fakes.bedrock_upstream import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock
from tests.fakes.server import ServerThread

PROFILE = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-sonnet-4-v1:0"


@pytest.fixture(scope="module")
def fake_bedrock():
    fake = FakeBedrock()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture(scope="module")
def aws_credentials():
    with pytest.MonkeyPatch.context() as mp:  # botocore's chain reads the process environment
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        yield mp


@pytest.fixture(scope="module")
def gw(gateway, aws_credentials):
    with extra_gateway(gateway) as g:
        yield g


def _bedrock_channel(gw, fake, model: str, upstream: str) -> str:
    name = "bedrock-" + uuid.uuid4().hex[:6]
    gw.store.put_channel(name, {"provider": "bedrock", "base_url": fake.url, "region": REGION, "models": [model],
                                "map": {model: upstream}}, exists=False)
    gw.forget_caches()
    return name


def _post(gw, key: str, route: str, body: dict) -> httpx.Response:
    return httpx.post(gw.url + route, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _sse_text(text: str, route: str) -> str:
    out = []
    for line in text.splitlines():
        if not line.startswith("data: {"):
            continue
        data = json.loads(line[6:])
        if route == "/v1/messages" and data.get("type") == "content_block_delta":
            out.append(data["delta"].get("text", ""))
        for choice in data.get("choices") or ():
            out.append(choice["delta"].get("content") or "")
    return "".join(out)


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True])
def test_claude_on_bedrock_goes_through_invoke_model_on_both_api_shapes(gw, fake_bedrock, route, stream):
    model = gw.model(provider="anthropic", input="3", output="15")
    channel = _bedrock_channel(gw, fake_bedrock, model, PROFILE)
    user = gw.user(balance="5")
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    r = _post(gw, gw.key(user), route, body)
    assert r.status_code == 200, r.text
    if stream:
        assert _sse_text(r.text, route) == "Hello from fake Bedrock"
    elif route == "/v1/messages":
        assert r.json()["content"][0]["text"] == "Hello from fake Bedrock"
    else:
        assert r.json()["choices"][0]["message"]["content"] == "Hello from fake Bedrock"
    [seen] = fake_bedrock.requests_for(PROFILE)[-1:]
    assert seen.operation == ("invoke-with-response-stream" if stream else "invoke")
    assert seen.body["anthropic_version"] == "bedrock-2023-05-31" and seen.body["max_tokens"] == 64
    assert "authorization" in seen.headers and "sk-" not in seen.headers["authorization"]
    [record] = gw.store.list_usage(user).records
    assert (record.input_tokens, record.output_tokens, record.channel) == (17, 6, channel)
    assert record.cost > 0 and gw.balance(user) == to_micros("5") - record.cost
    fake_bedrock.received.clear()


@pytest.mark.parametrize("stream", [False, True])
def test_the_responses_api_serves_claude_on_bedrock(gw, fake_bedrock, stream):
    """/v1/responses for a Claude model on Bedrock: translated to Messages, sent as InvokeModel."""
    import openai

    model = gw.model(provider="anthropic", input="3", output="15")
    _bedrock_channel(gw, fake_bedrock, model, PROFILE)
    user = gw.user(balance="5")
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(user), max_retries=0)
    if stream:
        with client.responses.stream(model=model, input="hi", max_output_tokens=64) as events:
            for _ in events:
                pass
            answer = events.get_final_response()
    else:
        answer = client.responses.create(model=model, input="hi", max_output_tokens=64)
    assert answer.output_text == "Hello from fake Bedrock" and answer.status == "completed"
    [seen] = fake_bedrock.requests_for(PROFILE)[-1:]
    assert seen.operation == ("invoke-with-response-stream" if stream else "invoke")
    assert seen.body["messages"][0]["role"] == "user" and seen.body["max_tokens"] == 64
    [record] = gw.store.list_usage(user).records
    assert record.cost > 0 and gw.balance(user) == to_micros("5") - record.cost
    fake_bedrock.received.clear()


@pytest.mark.parametrize("stream", [False, True])
def test_another_bedrock_model_goes_through_converse(gw, fake_bedrock, stream):
    model = gw.model(provider="bedrock", wire="openai", input="1", output="4")
    _bedrock_channel(gw, fake_bedrock, model, "amazon.nova-pro-v1:0")
    user = gw.user(balance="5")
    body = {"model": model, "max_tokens": 32, "stream": stream,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    r = _post(gw, gw.key(user), "/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    text = _sse_text(r.text, "chat") if stream else r.json()["choices"][0]["message"]["content"]
    assert text == "Hello from fake Bedrock"
    [seen] = fake_bedrock.requests_for("amazon.nova-pro-v1:0")
    assert seen.operation == ("converse-stream" if stream else "converse")
    assert seen.body == {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "be brief"}],
                         "inferenceConfig": {"maxTokens": 32}}
    [record] = gw.store.list_usage(user).records
    assert (record.input_tokens, record.output_tokens) == (21, 5)
    assert gw.balance(user) == to_micros("5") - record.cost
    fake_bedrock.received.clear()


def test_a_throttling_exception_in_the_stream_is_a_429_and_charges_nothing(gw, fake_bedrock):
    model = gw.model(provider="anthropic", input="3", output="15")
    upstream = "anthropic.claude-throttled-" + uuid.uuid4().hex[:4]
    fake_bedrock.behaviors[upstream] = {"throttle_in_stream": True}
    _bedrock_channel(gw, fake_bedrock, model, upstream)
    user = gw.user(balance="5")
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    r = _post(gw, gw.key(user), "/v1/messages", body)
    assert r.status_code == 429 and r.headers["retry-after"]
    assert gw.balance(user) == to_micros("5")


def test_a_wrong_signature_is_refused_by_bedrock_and_answered_as_a_502(gateway, fake_bedrock, aws_credentials):
    aws_credentials.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret")
    try:
        with extra_gateway(gateway) as g:
            model = g.model(provider="anthropic", input="3", output="15")
            _bedrock_channel(g, fake_bedrock, model, "anthropic.claude-wrong-sig")
            user = g.user(balance="5")
            body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
            r = _post(g, g.key(user), "/v1/messages", body)
            assert r.status_code == 502 and "credentials" in r.json()["error"]["message"]
            assert fake_bedrock.requests_for("anthropic.claude-wrong-sig") == []  # refused before it was served
            assert g.balance(user) == to_micros("5")
    finally:
        aws_credentials.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
