"""Azure AI Speech text to speech: SSML in, audio out, and the list of voices.

The operator's key goes in `Ocp-Apim-Subscription-Key`; the address is
`https://{AZURE_SPEECH_REGION}.tts.speech.microsoft.com`, or `AZURE_SPEECH_ENDPOINT`. A speech call's
body is `{"ssml": ..., "output_format": ...}`: the SSML is sent as it is, as `application/ssml+xml`,
with the format in `X-Microsoft-OutputFormat`.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..config import Settings
from .base import TRANSPORT_ERRORS, HTTPProvider, missing, raise_for_upstream

DEFAULT_OUTPUT_FORMAT = "audio-24khz-48kbitrate-mono-mp3"


class AzureSpeechProvider(HTTPProvider):
    channel_settings = {"base_url": "AZURE_SPEECH_ENDPOINT", "api_key_env": "AZURE_SPEECH_KEY",
                        "region": "AZURE_SPEECH_REGION"}
    name = "azure-speech"
    paths = {"speech": "/cognitiveservices/v1", "voices": "/cognitiveservices/voices/list"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.secret("AZURE_SPEECH_KEY")
        region = settings.secret("AZURE_SPEECH_REGION")
        endpoint = settings.secret("AZURE_SPEECH_ENDPOINT")
        self.base_url = (endpoint or (f"https://{region}.tts.speech.microsoft.com" if region else "")).rstrip("/")

    def require_configured(self) -> None:
        if not self.api_key:
            raise missing("AZURE_SPEECH_KEY", self.name)
        if not self.base_url:
            raise missing("AZURE_SPEECH_REGION or AZURE_SPEECH_ENDPOINT", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"ocp-apim-subscription-key": self.api_key or ""}

    def encode(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return str(body["ssml"]).encode(), {
            "content-type": "application/ssml+xml",
            "x-microsoft-outputformat": str(body.get("output_format") or DEFAULT_OUTPUT_FORMAT),
        }

    async def voices(self) -> list[Any]:
        """Azure's list of voices, as it answers it (a GET, so not through the POST pool)."""
        self.require_configured()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                answer = await client.get(self.url(self.path("voices"), ""), headers=self.headers())
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None
        if answer.status_code >= 400:
            raise_for_upstream(answer.status_code, answer.content, answer.headers, self.name)
        data = answer.json()
        return data if isinstance(data, list) else []
