"""OpenAI's wire format at any compatible base URL, and Azure OpenAI's deployments of it."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import UpstreamError
from .base import Event, HTTPProvider, missing


class OpenAIProvider(HTTPProvider):
    name = "openai"
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


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: the model's `upstream_model` names the deployment."""

    name = "azure"

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
        return f"{self.endpoint}/openai/deployments/{model}{path}?api-version={self.api_version}"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"api-key": self.api_key or "", "content-type": "application/json"}


def prepare_body(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    """The client's body, forwarded whole, with the upstream model id and usage asked for on streams."""
    out = dict(body)
    out["model"] = upstream_model
    if stream:
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    return out
