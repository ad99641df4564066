"""The provider seam: a registry instead of branches, operations mapped by each provider, a wire
format from the catalog, and request signing that sees the exact body bytes (as AWS SigV4 does)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import httpx
import pytest

from llm_gateway import providers
from llm_gateway.catalog import Catalog, default_catalog
from llm_gateway.config import Settings
from llm_gateway.errors import GatewayError
from llm_gateway.providers.openai import OpenAIProvider

SIGNING_SECRET = b"body-signing-secret"


class BodySignedProvider(OpenAIProvider):
    """An OpenAI-wire upstream whose requests carry an HMAC of the exact body bytes sent."""

    name = "signed"

    def sign(self, url: str, headers: dict[str, str], content: bytes) -> dict[str, str]:
        digest = hashlib.sha256(content).hexdigest()
        signature = hmac.new(SIGNING_SECRET, url.encode() + b"\n" + content, hashlib.sha256).hexdigest()
        return {**headers, "x-content-sha256": digest, "x-signature": signature}


@pytest.fixture
def signed_provider():
    providers.register("signed", f"{__name__}:BodySignedProvider", "openai")
    yield "signed"
    providers.REGISTRY.pop("signed", None)


@pytest.mark.parametrize("stream", [False, True])
def test_a_registered_provider_signs_the_exact_body_it_sends(gateway, signed_provider, stream):
    model = gateway.model(provider=signed_provider, input="1", output="1")
    r = httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {gateway.key()}"},
                   json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "sign me"}]})
    assert r.status_code == 200, r.text
    received = gateway.fake_openai.requests_for(model)[-1]
    raw = received.raw
    assert received.headers["x-content-sha256"] == hashlib.sha256(raw).hexdigest()
    url = gateway.fake_openai.url + "/v1/chat/completions"
    assert received.headers["x-signature"] == hmac.new(SIGNING_SECRET, url.encode() + b"\n" + raw,
                                                       hashlib.sha256).hexdigest()


def test_the_wire_format_comes_from_the_catalog():
    catalog = Catalog(default_catalog(), {"models": {
        "relay-claude": {"provider": "openai", "wire": "anthropic"},
        "plain": {"provider": "openai"},
    }})
    assert catalog.get("claude-sonnet-4-5").wire == "anthropic"
    assert catalog.get("gpt-4o").wire == "openai"
    assert catalog.get("mock-gpt").wire == "openai"
    assert catalog.get("relay-claude").wire == "anthropic"  # a catalog entry overrides its provider's default
    assert catalog.get("plain").wire == "openai"


def test_a_provider_refuses_an_operation_it_does_not_offer():
    provider = providers.Providers(Settings(env={"ANTHROPIC_API_KEY": "x"})).get("anthropic")
    with pytest.raises(GatewayError) as refused:
        asyncio.run(provider.send("embeddings", {}, model="claude-sonnet-4-5"))
    assert refused.value.status == 400 and "embeddings" in refused.value.message


def test_an_unknown_provider_is_a_502_naming_it():
    with pytest.raises(GatewayError) as failed:
        providers.Providers(Settings()).get("nowhere")
    assert failed.value.status == 502 and "nowhere" in failed.value.message


@pytest.mark.parametrize("status, kind, retryable", [
    (400, "invalid_request", False), (404, "not_found", False), (413, "request_too_large", False),
    (422, "unprocessable", False), (401, "upstream_error", True), (403, "upstream_error", True),
    (429, "upstream_rate_limited", True), (500, "upstream_error", True), (503, "upstream_error", True),
    (504, "upstream_timeout", True),
])
def test_upstream_refusals_say_whether_another_channel_may_succeed(status, kind, retryable):
    from llm_gateway.providers.base import raise_for_upstream

    with pytest.raises(GatewayError) as failed:
        raise_for_upstream(status, b'{"error": {"message": "no"}}', {}, "openai")
    assert failed.value.kind == kind and failed.value.retryable is retryable


def test_transport_failures_and_missing_credentials_are_retryable_and_gateway_refusals_are_not():
    provider = providers.Providers(Settings(env={"OPENAI_API_KEY": "x"})).get("openai")
    assert provider.failure(TimeoutError()).kind == "upstream_timeout"
    assert provider.failure(TimeoutError()).retryable and provider.failure(OSError()).retryable
    with pytest.raises(GatewayError) as unconfigured:
        providers.Providers(Settings()).get("openai").require_configured()
    assert unconfigured.value.retryable and "OPENAI_API_KEY" in unconfigured.value.message
    assert not GatewayError("invalid_request", "bad").retryable


def test_azure_openai_chat_goes_to_the_deployment_with_the_operators_api_key(gateway):
    from tests.conftest import extra_gateway
    from tests.fakes.openai_upstream import OPERATOR_KEY

    env = {**gateway.runtime.settings.env, "AZURE_OPENAI_API_KEY": OPERATOR_KEY,
           "AZURE_OPENAI_ENDPOINT": gateway.fake_openai.url, "AZURE_OPENAI_API_VERSION": "2024-10-21"}
    with extra_gateway(gateway, env=env) as azure:
        model = azure.model(provider="azure", input="1", output="1")
        key = azure.key()
        r = httpx.post(azure.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream"
        received = gateway.fake_openai.received[-1]
        assert received.path == f"/openai/deployments/{model}/chat/completions"
        assert received.headers["api-key"] == OPERATOR_KEY and key not in str(received.headers)
