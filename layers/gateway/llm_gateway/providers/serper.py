"""Serper (google.serper.dev): `POST {SERPER_BASE_URL}/search` with the operator's `X-API-KEY` and a
JSON body of the query."""

from __future__ import annotations

from ..config import Settings
from .base import HTTPProvider, missing

DEFAULT_BASE_URL = "https://google.serper.dev"


class SerperProvider(HTTPProvider):
    name = "serper"
    paths = {"serper-search": "/search"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("SERPER_API_KEY")
        self.base_url = (settings.secret("SERPER_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("SERPER_API_KEY", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"x-api-key": self.api_key or "", "content-type": "application/json"}
