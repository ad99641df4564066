"""AWS Bedrock runtime (API.md 7): Claude through InvokeModel with Anthropic's own Messages body, other
models through Converse, both signed with SigV4 by botocore from its credential chain (on Lambda, the
function's role: no provider key at all).

Streams are AWS's binary event stream, decoded by botocore's own parser (`botocore.eventstream`):
InvokeModelWithResponseStream wraps each Anthropic event as base64 in a `chunk`; ConverseStream sends
its events as JSON, turned into OpenAI chunks here (translate.chat_converse). An `exception` message in
a stream is an error like an HTTP one (a throttling one is a 429).

The model id (or inference-profile ARN) is the channel's mapping of the catalog model, in the URL.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from ..config import Settings
from ..errors import CLIENT_KINDS, GatewayError, Kind, UpstreamError
from ..translate.chat_converse import chat_to_converse, converse_event_to_chunk, converse_to_chat
from .base import Event, EventStream, HTTPProvider, missing
from .pool import Opened

ANTHROPIC_VERSION = "bedrock-2023-05-31"
EVENT_STREAM = "application/vnd.amazon.eventstream"

# A stream's `exception` message by its type → how the caller sees it.
_EXCEPTIONS: dict[str, Kind] = {
    "throttlingException": "upstream_rate_limited", "validationException": "invalid_request",
    "modelTimeoutException": "upstream_timeout",
}


class BedrockProvider(HTTPProvider):
    name = "bedrock"
    paths = {"messages": "/invoke", "chat": "/converse",
             "messages+stream": "/invoke-with-response-stream", "chat+stream": "/converse-stream"}
    channel_settings = {"base_url": "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "region": "AWS_REGION"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.region = settings.secret("AWS_REGION") or settings.secret("AWS_DEFAULT_REGION")
        endpoint = settings.secret("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
        self.endpoint = (endpoint or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self._credentials: Any = None

    def require_configured(self) -> None:
        if not self.region:
            raise missing("AWS_REGION", self.name)

    def url(self, path: str, model: str) -> str:
        # An inference-profile ARN's "/" encoded; its ":" left as is, as the connection pool's URL
        # parser would leave it, so that the path signed is the path sent.
        return f"{self.endpoint}/model/{quote(model, safe=':')}{path}"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"content-type": "application/json"}

    def _request(self, operation: str, model: str, body: dict[str, Any], headers: dict[str, str] | None,
                 accept: str = "application/json") -> tuple[str, dict[str, str], bytes]:
        if operation.startswith("messages"):
            body = {k: v for k, v in body.items() if k not in ("model", "stream")}
            body["anthropic_version"] = ANTHROPIC_VERSION
            beta = (headers or {}).get("anthropic-beta")
            if beta:
                body["anthropic_beta"] = [b.strip() for b in beta.split(",") if b.strip()]
        else:
            body = chat_to_converse(body)
        return super()._request(operation, model, body, headers, accept)

    def sign(self, url: str, headers: dict[str, str], content: bytes) -> dict[str, str]:
        """SigV4 over the exact body, by botocore, with credentials from its chain (refreshed by it)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=content, headers=headers)
        SigV4Auth(credentials, "bedrock", self.region).add_auth(request)
        return dict(request.headers.items())

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                raise UpstreamError("upstream_error", "The bedrock provider found no AWS credentials.")
        return self._credentials.get_frozen_credentials()

    async def send(self, operation: str, body: dict[str, Any], *, model: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
        data = await super().send(operation, body, model=model, headers=headers)
        if operation == "chat":
            return converse_to_chat(data, str(body.get("model") or model))
        return data

    async def stream(self, operation: str, body: dict[str, Any], *, model: str,
                     headers: dict[str, str] | None = None) -> EventStream:
        shown = str(body.get("model") or model)

        async def first_event(response: Opened) -> tuple[AsyncIterator[Event], Event | None]:
            events = self._events_of(response, operation, shown)
            return events, await anext(events, None)

        response, started = await self._open(operation + "+stream", body, model, headers, EVENT_STREAM, first_event)
        assert started is not None
        events, first = started
        return EventStream(first, events, response.aclose)

    async def _events_of(self, response: Opened, operation: str, model: str) -> AsyncIterator[Event]:
        from botocore.eventstream import EventStreamBuffer, ParserError

        frames = EventStreamBuffer()
        created = int(time.time())
        try:
            async for chunk in response.aiter_bytes():
                frames.add_data(chunk)
                for message in frames:
                    event = self._event(message.headers, message.payload, operation, model, created)
                    if event is not None:
                        yield event
        except (httpx.HTTPError, OSError, ParserError) as exc:
            raise self.failure(exc, "stream") from None

    def _event(self, headers: dict[str, Any], payload: bytes, operation: str, model: str,
               created: int) -> Event | None:
        kind = headers.get(":message-type")
        if kind == "exception" or kind == "error":
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "")
            raise _stream_error(name, payload, self.name)
        data = orjson.loads(payload) if payload else {}
        if operation == "messages":
            event = orjson.loads(base64.b64decode(data["bytes"]))
            event.pop("amazon-bedrock-invocationMetrics", None)
            return event if isinstance(event, dict) else None
        return converse_event_to_chunk(str(headers.get(":event-type")), data, model, created)


def _stream_error(name: str, payload: bytes, provider: str) -> GatewayError:
    kind: Kind = _EXCEPTIONS.get(name, "upstream_error")
    try:
        message = str(orjson.loads(payload).get("message") or name)
    except (orjson.JSONDecodeError, AttributeError):
        message = name or "unknown error"
    headers = {"Retry-After": "1"} if kind == "upstream_rate_limited" else None
    return UpstreamError(kind, f"The {provider} provider failed mid-stream: {message}", headers=headers,
                         retryable=kind not in CLIENT_KINDS)
