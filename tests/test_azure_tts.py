"""Azure text to speech (API.md 5.4): the voice list (cached an hour), synthesis from SSML, `{ssml}`
or `{text, voice}`, the output format passed through, audio relayed, billed per spoken character,
malformed SSML refused before any upstream call, errors in the platform shape."""

from __future__ import annotations

import math

import httpx
import pytest

from llm_gateway.http import tts
from llm_gateway.money import to_micros
from tests.conftest import extra_gateway
from tests.fakes.azure_speech_upstream import SPEECH_KEY, VOICES, FakeAzureSpeech
from tests.fakes.server import ServerThread

TTS = "/api/v1/openapi/azure/tts"
SSML = ('<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
        '<voice name="en-US-AvaMultilingualNeural">Hello <break time="100ms"/>world</voice></speak>')


@pytest.fixture(scope="module")
def azure():
    fake = FakeAzureSpeech()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture
def gw(gateway, azure):
    env = {**gateway.runtime.settings.env, "AZURE_SPEECH_KEY": SPEECH_KEY, "AZURE_SPEECH_ENDPOINT": azure.url}
    with extra_gateway(gateway, env=env) as other:
        other.store.set_model_override("azure-tts", {"provider": "azure-speech", "kind": "speech",
                                                     "per_1m_chars": "15"})
        other.runtime.catalogs.refresh()
        tts._voices.clear()
        azure.received.clear()
        azure.status = 200
        yield other


def _post(gw, key, **kw) -> httpx.Response:
    return httpx.post(gw.url + f"{TTS}/v1", headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})},
                      timeout=30, **kw)


def funded(gw) -> tuple[str, str]:
    user = gw.user(balance="5")
    return user, gw.key(user)


def test_ssml_is_spoken_and_billed_per_character_of_text(gw, azure):
    user, key = funded(gw)
    r = _post(gw, key, content=SSML.encode(), headers={"content-type": "application/ssml+xml",
                                                       "X-Microsoft-OutputFormat": "riff-24khz-16bit-mono-pcm"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/x-wav" and r.content == b"AZURE-AUDIO-0;AZURE-AUDIO-1;AZURE-AUDIO-2;"
    sent = azure.received[-1]
    assert sent.body.decode() == SSML
    assert sent.headers["x-microsoft-outputformat"] == "riff-24khz-16bit-mono-pcm"
    assert sent.headers["ocp-apim-subscription-key"] == SPEECH_KEY and key not in str(sent.headers)
    assert gw.balance(user) == to_micros("5") - math.ceil(len("Hello world") * 15)
    assert gw.store.list_usage(user).records[0].units == {"characters": len("Hello world")}


def test_text_and_voice_are_escaped_into_ssml_with_the_default_format(gw, azure):
    user, key = funded(gw)
    r = _post(gw, key, json={"text": "Fish & <chips>", "voice": "en-GB-SoniaNeural"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    sent = azure.received[-1]
    assert b'<voice name="en-GB-SoniaNeural">Fish &amp; &lt;chips&gt;</voice>' in sent.body
    assert sent.headers["x-microsoft-outputformat"] == "audio-24khz-48kbitrate-mono-mp3"
    assert gw.balance(user) == to_micros("5") - math.ceil(len("Fish & <chips>") * 15)


def test_ssml_in_a_form_field(gw, azure):
    _, key = funded(gw)
    r = _post(gw, key, data={"ssml": SSML})
    assert r.status_code == 200 and azure.received[-1].body.decode() == SSML


@pytest.mark.parametrize("body", [
    {"content": b"<speak>unclosed", "headers": {"content-type": "application/ssml+xml"}},
    {"content": b"<voice>not speak</voice>", "headers": {"content-type": "application/ssml+xml"}},
    {"content": b'<!DOCTYPE x [<!ENTITY a "aaaa">]><speak>&a;</speak>',
     "headers": {"content-type": "application/ssml+xml"}},
    {"json": {"text": "   "}},
    {"json": {"ssml": "<speak></speak>"}},
    {"json": {"text": "hi", "rate": "fast"}},
])
def test_malformed_ssml_is_400_in_the_platform_shape_before_any_upstream_call(gw, azure, body):
    user, key = funded(gw)
    r = _post(gw, key, **body)
    assert r.status_code == 400 and r.json()["statusCode"] == 400 and r.json()["data"] is None
    assert azure.received == [] and gw.balance(user) == to_micros("5")


def test_synthesis_needs_the_azure_tts_permission(gw, azure):
    user = gw.user(balance="5")
    r = _post(gw, gw.key(user, permissions=["gpt-4o"]), json={"text": "hi"})
    assert r.status_code == 403 and r.json()["errorType"] == "permission_error" and azure.received == []


def test_an_upstream_failure_is_502_and_charges_nothing(gw, azure):
    azure.status = 500
    user, key = funded(gw)
    r = _post(gw, key, json={"text": "hi"})
    assert r.status_code == 502 and r.json()["errorType"] == "upstream_error"
    assert gw.balance(user) == to_micros("5")


def test_the_voice_list_is_azures_own_fetched_once_an_hour(gw, azure):
    _, key = funded(gw)
    before = azure.voice_calls
    for _ in range(3):
        r = httpx.get(gw.url + f"{TTS}/voices/list/v1", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json() == VOICES
    assert azure.voice_calls == before + 1


def test_the_mock_speaks_azure_tts_with_no_account(gateway):
    gateway.store.set_model_override("azure-tts", {"provider": "mock", "kind": "speech", "per_1m_chars": "0"})
    gateway.runtime.catalogs.refresh()
    tts._voices.clear()
    try:
        key = gateway.key()
        r = _post(gateway, key, json={"text": "hello there"},
                  headers={"X-Microsoft-OutputFormat": "riff-24khz-16bit-mono-pcm"})
        assert r.status_code == 200 and r.content[:4] == b"RIFF" and r.headers["content-type"] == "audio/wav"
        voices = httpx.get(gateway.url + f"{TTS}/voices/list/v1", headers={"Authorization": f"Bearer {key}"})
        assert voices.status_code == 200 and voices.json()[0]["ShortName"] == "en-US-AvaMultilingualNeural"
    finally:
        gateway.store.delete_model_override("azure-tts")
        gateway.runtime.catalogs.refresh()


def test_the_default_catalog_prices_azure_tts_per_character_on_azure_speech():
    from llm_gateway.catalog import Catalog, default_catalog

    spec = Catalog(default_catalog()).get("azure-tts")
    assert (spec.kind, spec.provider) == ("speech", "azure-speech") and spec.prices.per_1m_chars > 0


def test_missing_azure_credentials_are_502_naming_the_setting(gateway):
    user = gateway.user(balance="5")
    r = _post(gateway, gateway.key(user), json={"text": "hi"})  # this gateway has no AZURE_SPEECH_* set
    assert r.status_code == 502 and "AZURE_SPEECH_KEY" in r.json()["message"]
    assert gateway.balance(user) == to_micros("5")
