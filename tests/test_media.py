"""Embeddings, images and speech (API.md 3.5, 3.7): OpenAI's shapes through the official SDK, billed
in their own units, refused in the OpenAI shape, nothing charged when the upstream fails."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import pytest
from openai import OpenAI

from llm_gateway.money import to_micros


def client(gateway, key: str) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def funded(gateway, balance: str = "5") -> tuple[str, str]:
    user = gateway.user(balance=balance)
    return user, gateway.key(user)


def _post(gateway, key, path, **kw) -> httpx.Response:
    return httpx.post(gateway.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


# --- embeddings -------------------------------------------------------------------------------------

def test_embeddings_through_the_sdk_are_relayed_and_billed_from_the_upstreams_usage(gateway):
    model = gateway.model(kind="embedding", input="0.5", encoding="cl100k_base")
    user, key = funded(gateway)
    answer = client(gateway, key).embeddings.create(model=model, input=["one two three", "four five"], dimensions=8)
    assert [d.index for d in answer.data] == [0, 1] and len(answer.data[0].embedding) == 8
    assert answer.usage.prompt_tokens == 5  # what the fake upstream reports
    received = gateway.fake_openai.requests_for(model)[-1]
    assert received.path == "/v1/embeddings" and received.body["input"] == ["one two three", "four five"]
    assert received.body["encoding_format"] == "base64"  # the SDK asks for base64 and decodes it
    assert received.headers["authorization"] != f"Bearer {key}"
    assert gateway.balance(user) == to_micros("5") - math.ceil(5 * 0.5)  # 5 tokens at 0.5 per 1M: 3 micros
    record = gateway.store.list_usage(user).records[0]
    assert (record.route, record.input_tokens, record.cost) == ("embeddings", 5, 3)


def test_embeddings_of_token_arrays_and_float_encoding(gateway):
    model = gateway.model(kind="embedding", input="1")
    user, key = funded(gateway)
    r = _post(gateway, key, "/embeddings", json={"model": model, "input": [[1, 2, 3], [4, 5]],
                                                 "encoding_format": "float"})
    assert r.status_code == 200, r.text
    assert [len(d["embedding"]) for d in r.json()["data"]] == [8, 8]
    assert gateway.balance(user) == to_micros("5") - 5


def test_a_chat_model_on_embeddings_is_400_naming_the_model_and_the_route(gateway):
    model = gateway.model(input="1")
    user, key = funded(gateway)
    r = _post(gateway, key, "/embeddings", json={"model": model, "input": "hi"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert model in r.json()["error"]["message"] and "/v1/embeddings" in r.json()["error"]["message"]
    assert gateway.fake_openai.requests_for(model) == [] and gateway.balance(user) == to_micros("5")


def test_an_embedding_model_on_chat_is_400(gateway):
    model = gateway.model(kind="embedding", input="1")
    _, key = funded(gateway)
    r = _post(gateway, key, "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "/v1/chat/completions" in r.json()["error"]["message"]


def test_the_mock_embeds_deterministic_unit_vectors(gateway):
    _, key = funded(gateway)
    sdk = client(gateway, key)
    first = sdk.embeddings.create(model="mock-embedding", input=["same text", "other text"])
    again = sdk.embeddings.create(model="mock-embedding", input="same text")
    vector = first.data[0].embedding
    assert len(vector) == 256 and abs(sum(v * v for v in vector) - 1) < 1e-5
    assert again.data[0].embedding == pytest.approx(vector, abs=1e-6)
    assert first.data[1].embedding != pytest.approx(vector, abs=1e-3)
    short = sdk.embeddings.create(model="mock-embedding", input="same text", dimensions=32)
    assert len(short.data[0].embedding) == 32


@pytest.mark.parametrize("body, param", [
    ({"input": 5}, "input"), ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"), ({}, "input"),
])
def test_malformed_embedding_requests_are_400_naming_the_field(gateway, body, param):
    model = gateway.model(kind="embedding", input="1")
    user, key = funded(gateway)
    r = _post(gateway, key, "/embeddings", json={"model": model, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert gateway.balance(user) == to_micros("5")


# --- images -----------------------------------------------------------------------------------------

DALLE_PRICES = {"1024x1024/standard": "0.04", "1024x1024/hd": "0.08", "*/standard": "0.05"}


def test_images_are_charged_per_image_at_their_size_and_quality(gateway):
    model = gateway.model(kind="image", per_image=DALLE_PRICES)
    user, key = funded(gateway)
    answer = client(gateway, key).images.generate(model=model, prompt="a lighthouse", n=2, size="1024x1024",
                                                  quality="hd", response_format="b64_json")
    assert [d.b64_json for d in answer.data] == ["iVBORw0KGgo="] * 2
    assert gateway.balance(user) == to_micros("5") - 2 * to_micros("0.08")
    assert gateway.store.list_usage(user).records[0].units == {"images": {"1024x1024/hd": 2}}
    received = gateway.fake_openai.requests_for(model)[-1].body
    assert received["model"] == model and received["n"] == 2


def test_a_wildcard_price_serves_the_sizes_without_their_own(gateway):
    model = gateway.model(kind="image", per_image=DALLE_PRICES)
    user, key = funded(gateway)
    r = _post(gateway, key, "/images/generations",
              json={"model": model, "prompt": "x", "size": "1792x1024", "quality": "standard", "response_format": "url"})
    assert r.status_code == 200 and r.json()["data"][0]["url"].startswith("https://images.example/")
    assert gateway.balance(user) == to_micros("5") - to_micros("0.05")


def test_an_image_size_without_a_price_is_400_before_any_upstream_call(gateway):
    model = gateway.model(kind="image", per_image={"1024x1024/standard": "0.04"})
    user, key = funded(gateway)
    r = _post(gateway, key, "/images/generations", json={"model": model, "prompt": "x", "size": "256x256"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "size" and "256x256" in r.json()["error"]["message"]
    assert gateway.fake_openai.requests_for(model) == [] and gateway.balance(user) == to_micros("5")


def test_token_usage_reported_by_the_upstream_is_billed_at_token_prices(gateway):
    usage = {"input_tokens": 50, "output_tokens": 4000, "total_tokens": 4050,
             "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}
    model = gateway.model(kind="image", input="5", output="40", per_image={"*": "0.25"},
                          behavior={"image_usage": usage})
    user, key = funded(gateway)
    r = _post(gateway, key, "/images/generations", json={"model": model, "prompt": "x", "quality": "high"})
    assert r.status_code == 200 and r.json()["usage"] == usage
    assert gateway.balance(user) == to_micros("5") - (50 * 5 + 4000 * 40)  # micros: tokens × price per 1M


def test_images_from_a_form_body(gateway):
    model = gateway.model(kind="image", per_image=DALLE_PRICES)
    user, key = funded(gateway)
    r = _post(gateway, key, "/images/generations", data={"model": model, "prompt": "x", "n": "3",
                                                         "quality": "standard"})
    assert r.status_code == 200 and len(r.json()["data"]) == 3
    assert gateway.balance(user) == to_micros("5") - 3 * to_micros("0.04")


def test_the_mock_draws_a_real_png(gateway):
    _, key = funded(gateway)
    answer = client(gateway, key).images.generate(model="mock-image", prompt="a cat", response_format="b64_json")
    picture = base64.b64decode(answer.data[0].b64_json)
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", picture[16:24]) == (64, 64)


def test_an_upstream_failure_on_images_charges_nothing(gateway):
    model = gateway.model(kind="image", per_image=DALLE_PRICES, behavior={"status": 500})
    user, key = funded(gateway)
    r = _post(gateway, key, "/images/generations", json={"model": model, "prompt": "x", "quality": "standard"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    assert gateway.balance(user) == to_micros("5")


# --- speech -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, media_type", [
    ("mp3", "audio/mpeg"), ("opus", "audio/opus"), ("aac", "audio/aac"), ("flac", "audio/flac"),
    ("wav", "audio/wav"), ("pcm", "audio/pcm"),
])
def test_speech_streams_the_audio_with_its_type_and_charges_per_character(gateway, fmt, media_type):
    model = gateway.model(kind="speech", per_1m_chars="15")
    user, key = funded(gateway)
    text = "Hello from the gateway, spoken aloud."
    with client(gateway, key).audio.speech.with_streaming_response.create(
            model=model, voice="alloy", input=text, response_format=fmt) as answer:
        assert answer.headers["content-type"].startswith(media_type)
        audio = b"".join(answer.iter_bytes())
    assert audio == b"".join(b"FAKE-AUDIO-" + fmt.encode() + b"-%d;" % i for i in range(4))
    assert gateway.balance(user) == to_micros("5") - math.ceil(len(text) * 15)
    assert gateway.store.list_usage(user).records[0].units == {"characters": len(text)}


def test_the_mock_speaks_real_wav(gateway):
    _, key = funded(gateway)
    r = _post(gateway, key, "/audio/speech", json={"model": "mock-tts", "voice": "alloy", "input": "hello there",
                                                   "response_format": "wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE"
    assert struct.unpack("<I", r.content[40:44])[0] == len(r.content) - 44


def test_an_upstream_failure_before_any_audio_is_502_and_charges_nothing(gateway):
    model = gateway.model(kind="speech", per_1m_chars="15", behavior={"status": 503})
    user, key = funded(gateway)
    r = _post(gateway, key, "/audio/speech", json={"model": model, "voice": "alloy", "input": "x"})
    assert r.status_code == 502 and gateway.balance(user) == to_micros("5")


@pytest.mark.parametrize("body, param", [
    ({"voice": "alloy", "input": ""}, "input"), ({"voice": "alloy", "input": "x", "response_format": "ogg"},
                                                 "response_format"),
    ({"input": "x"}, "voice"), ({"voice": "alloy", "input": "x", "speed": 9}, "speed"),
])
def test_malformed_speech_requests_are_400_naming_the_field(gateway, body, param):
    model = gateway.model(kind="speech", per_1m_chars="15")
    user, key = funded(gateway)
    r = _post(gateway, key, "/audio/speech", json={"model": model, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert gateway.balance(user) == to_micros("5")


def test_azure_openai_image_deployments_are_served_and_billed_per_image(gateway):
    """Azure OpenAI: the deployment in the URL, the operator's key in `api-key`, an api-version."""
    from tests.conftest import extra_gateway
    from tests.fakes.openai_upstream import OPERATOR_KEY

    env = {**gateway.runtime.settings.env, "AZURE_OPENAI_API_KEY": OPERATOR_KEY,
           "AZURE_OPENAI_ENDPOINT": gateway.fake_openai.url}
    with extra_gateway(gateway, env=env) as azure:
        model = azure.model(provider="azure", kind="image", per_image=DALLE_PRICES)
        user = azure.user(balance="5")
        key = azure.key(user)
        r = client(azure, key).images.generate(model=model, prompt="x", n=1, size="1024x1024", quality="standard")
        assert r.data[0].b64_json == "iVBORw0KGgo="
        received = gateway.fake_openai.received[-1]
        assert received.path == f"/openai/deployments/{model}/images/generations"
        assert received.headers["api-key"] == OPERATOR_KEY and "authorization" not in received.headers
        assert azure.balance(user) == to_micros("5") - to_micros("0.04")
