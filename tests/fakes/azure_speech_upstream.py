"""A fake Azure AI Speech text-to-speech endpoint on 127.0.0.1, speaking Azure's wire: POST
/cognitiveservices/v1 with SSML and `X-Microsoft-OutputFormat`, GET /cognitiveservices/voices/list,
both behind `Ocp-Apim-Subscription-Key`. It records what it received."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SPEECH_KEY = "azure-speech-operator-key-0000"
CONTENT_TYPES = {"riff": "audio/x-wav", "raw": "audio/x-pcm", "audio": "audio/mpeg", "ogg": "audio/ogg",
                 "webm": "audio/webm"}
VOICES = [{"Name": "Microsoft Server Speech Text to Speech Voice (en-US, AvaMultilingualNeural)",
           "ShortName": "en-US-AvaMultilingualNeural", "Gender": "Female", "Locale": "en-US"}]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeAzureSpeech:
    received: list[Received] = field(default_factory=list)
    status: int = 200  # what synthesis answers
    voice_calls: int = 0
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/cognitiveservices/v1", self.speak, methods=["POST"]),
            Route("/cognitiveservices/voices/list", self.voices, methods=["GET"]),
        ])

    async def speak(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(Received(request.url.path, dict(request.headers), body))
        if request.headers.get("ocp-apim-subscription-key") != SPEECH_KEY:
            return Response(status_code=401)
        if self.status != 200:
            return Response(b"", status_code=self.status)
        output = request.headers.get("x-microsoft-outputformat", "")
        media_type = CONTENT_TYPES.get(output.split("-")[0], "audio/mpeg")

        async def audio() -> Any:
            for i in range(3):
                yield b"AZURE-AUDIO-%d;" % i

        return StreamingResponse(audio(), media_type=media_type)

    async def voices(self, request: Request) -> Response:
        self.voice_calls += 1
        if request.headers.get("ocp-apim-subscription-key") != SPEECH_KEY:
            return Response(status_code=401)
        return JSONResponse(VOICES)
