"""OpenAI's wire format at any compatible base URL, and Azure OpenAI's deployments of it."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from ..config import Settings
from ..errors import UpstreamError
from .base import TRANSPORT_ERRORS, Event, HTTPProvider, missing


class OpenAIProvider(HTTPProvider):
    name = "openai"
    # A channel's fields (catalog.channels) as the settings this class reads.
    channel_settings = {"base_url": "OPENAI_BASE_URL", "api_key_env": "OPENAI_API_KEY"}
    paths = {
        "chat": "/chat/completions",
        "completions": "/completions",
        "responses": "/responses",
        "embeddings": "/embeddings",
        "images": "/images/generations",
        "speech": "/audio/speech",
    }

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("OPENAI_API_KEY")
        self.base_url = (settings.secret("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("OPENAI_API_KEY", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}

    def check_event(self, event: Event) -> None:
        err = event.get("error")
        if err:
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamError("upstream_error", f"The {self.name} provider failed mid-stream: {message}")

    async def call(self, method: str, operation: str, tail: str, params: dict[str, str]) -> dict[str, Any]:
        """A GET or DELETE of something the upstream keeps (a stored response: `tail` is
        "/{id}" or "/{id}/input_items"), its JSON answer mapped as `send`'s is. Rare calls, so a
        plain client rather than the pooled POST path."""
        self.require_configured()
        url = self.url(self.path(operation) + tail, "")
        headers = {k: v for k, v in self.headers().items() if k != "content-type"}
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.client.request(method, url, params=params, headers={
                    **headers, "accept": "application/json", "user-agent": "llm-gateway"})
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None
        return self.json_answer(answer.status_code, answer.content, answer.headers)

    def realtime_url(self, model: str) -> str:
        """The Realtime API's WebSocket address for `model` (API.md 3.9)."""
        return _websocket(self.base_url) + "/realtime?model=" + quote(model, safe="")


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: the model's `upstream_model` names the deployment."""

    name = "azure"
    channel_settings = {"base_url": "AZURE_OPENAI_ENDPOINT", "api_key_env": "AZURE_OPENAI_API_KEY",
                        "api_version": "AZURE_OPENAI_API_VERSION"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("AZURE_OPENAI_API_KEY")
        self.endpoint = (settings.secret("AZURE_OPENAI_ENDPOINT") or "").rstrip("/")
        self.api_version = settings.secret("AZURE_OPENAI_API_VERSION") or "2024-10-21"

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("AZURE_OPENAI_API_KEY", self.name)
        if not self.endpoint:
            raise missing("AZURE_OPENAI_ENDPOINT", self.name)

    def url(self, path: str, model: str) -> str:
        if path.startswith("/responses"):
            # Azure serves the Responses API on its v1 surface only: the deployment is the body's model.
            return f"{self.endpoint}/openai/v1{path}"
        return f"{self.endpoint}/openai/deployments/{model}{path}?api-version={self.api_version}"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"api-key": self.api_key or "", "content-type": "application/json"}

    def realtime_url(self, model: str) -> str:
        return _websocket(self.endpoint) + "/openai/v1/realtime?model=" + quote(model, safe="")


def _websocket(url: str) -> str:
    return "wss://" + url[len("https://"):] if url.startswith("https://") else "ws://" + url.removeprefix("http://")


def prepare_body(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    """The client's body, forwarded whole, with the upstream model id and usage asked for on streams."""
    out = dict(body)
    out["model"] = upstream_model
    if stream:
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    return out
