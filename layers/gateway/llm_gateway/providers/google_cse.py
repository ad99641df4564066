"""Google Custom Search JSON API (`GET {GOOGLE_CSE_BASE_URL}?key=…&cx=…&q=…`): the operator's key and
search engine id, the client's query parameters (only those the search route takes) beside them.

Google answers a GET, which the shared POST pool does not make, so this provider keeps a small
client of its own; errors and transport failures map exactly as every other provider's do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config import Settings
from .base import TRANSPORT_ERRORS, HTTPProvider, missing

DEFAULT_BASE_URL = "https://www.googleapis.com/customsearch/v1"


class GoogleCSEProvider(HTTPProvider):
    name = "google-cse"
    paths = {"google-search": ""}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("GOOGLE_CSE_API_KEY")
        self.cx = settings.secret("GOOGLE_CSE_CX")
        self.base_url = (settings.secret("GOOGLE_CSE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("GOOGLE_CSE_API_KEY", self.name)
        if not self.cx:
            raise missing("GOOGLE_CSE_CX", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {}


    async def send(
        self, operation: str, body: dict[str, Any], *, model: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """`body`: the query parameters to forward; the operator's `key` and `cx` always win."""
        self.require_configured()
        url = self.url(self.path(operation), model)
        params = {k: str(v) for k, v in body.items() if v is not None and k not in ("key", "cx")}
        params.update(key=self.api_key or "", cx=self.cx or "")
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.client.get(
                    url, params=params, headers={"accept": "application/json", "user-agent": "llm-gateway"}
                )
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None
        return self.json_answer(answer.status_code, answer.content, answer.headers)
