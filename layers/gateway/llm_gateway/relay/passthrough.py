"""Plans for a route whose client family is the upstream's own: forward, observe usage, relay.

The client's body is forwarded whole (unknown fields included); the gateway only swaps in the
upstream model id and, on streams, asks for usage, then hides the usage it asked for when the
client did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..billing.usage import Usage, from_openai
from ..catalog import ModelSpec
from ..errors import GatewayError
from ..http.sse import OPENAI_DONE, openai_error_events, openai_event, typed_event
from ..providers.base import Event
from ..providers.openai import prepare_body
from .output import OutputText


def _openai_text(choices: Any, legacy: bool) -> str:
    parts: list[str] = []
    for choice in choices or ():
        if not isinstance(choice, dict):
            continue
        if legacy:
            parts.append(str(choice.get("text") or ""))
            continue
        message = choice.get("message") or choice.get("delta") or {}
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            for call in message.get("tool_calls") or ():
                fn = (call or {}).get("function") or {}
                parts.append(str(fn.get("arguments") or ""))
    return "".join(parts)


class OpenAIStreamRelay:
    def __init__(self, client_wants_usage: bool, legacy: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.legacy = legacy
        self.usage: Usage | None = None
        self.output = OutputText()

    def feed(self, event: Event) -> list[bytes]:
        usage = event.get("usage")
        if usage:
            self.usage = from_openai(usage)
        choices = event.get("choices")
        if choices:
            text = _openai_text(choices, self.legacy)
            if text:
                self.output.append(text)
        if not self.client_wants_usage:
            if usage and not choices:
                return []
            event.pop("usage", None)
        return [openai_event(event)]

    def finish(self) -> list[bytes]:
        return [OPENAI_DONE]

    def fail(self, err: GatewayError) -> list[bytes]:
        return openai_error_events(err)


class RenamingStreamRelay(OpenAIStreamRelay):
    """The relay of a model the catalog serves under another upstream id: each event names the
    model the client asked for (a model served under its own name pays nothing for this)."""

    def __init__(self, client_wants_usage: bool, legacy: bool, model: str) -> None:
        super().__init__(client_wants_usage, legacy)
        self.model = model

    def feed(self, event: Event) -> list[bytes]:
        if "model" in event:
            event["model"] = self.model
        return super().feed(event)


def renamed(spec: ModelSpec) -> str | None:
    """The name answers must carry instead of the upstream's, when the two differ."""
    return spec.name if spec.name != spec.upstream_model else None


def openai_chat_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, **_: Any) -> OpenAIPassthrough:
    return OpenAIPassthrough(body, spec.upstream_model, stream, rename=renamed(spec))


def openai_completions_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, **_: Any) -> OpenAIPassthrough:
    return OpenAIPassthrough(body, spec.upstream_model, stream, legacy=True, rename=renamed(spec))


class OpenAIPassthrough:
    """An OpenAI-family route (chat or legacy completions) served by an OpenAI-wire upstream."""

    def __init__(self, body: dict[str, Any], upstream_model: str, stream: bool, *, legacy: bool = False,
                 rename: str | None = None) -> None:
        self.operation = "completions" if legacy else "chat"
        self.legacy = legacy
        options = body.get("stream_options")
        self.client_wants_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        self.body = prepare_body(body, upstream_model, stream)
        self.headers = None
        self.rename = rename

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        if self.rename is not None and "model" in data:
            data["model"] = self.rename
        return data, from_openai(data.get("usage")), _openai_text(data.get("choices"), self.legacy)

    def translator(self) -> OpenAIStreamRelay:
        if self.rename is not None:
            return RenamingStreamRelay(self.client_wants_usage, self.legacy, self.rename)
        return OpenAIStreamRelay(self.client_wants_usage, self.legacy)


@dataclass(frozen=True)
class JSONPlan:
    """A JSON call forwarded as sent (with the upstream's model id), its usage read by `meter`."""

    operation: str
    body: dict[str, Any]
    meter: Any  # (answer) -> Usage | None
    headers: dict[str, str] | None = None
    rename: str | None = None  # the model name the answer carries, when not the upstream's (`renamed`)

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        if self.rename is not None and "model" in data:
            data["model"] = self.rename
        return data, self.meter(data), ""

    def translator(self) -> Any:  # pragma: no cover - these calls never stream events
        raise NotImplementedError


@dataclass(frozen=True)
class AudioPlan:
    operation: str
    body: dict[str, Any]
    usage: Usage
    headers: dict[str, str] | None = None


# --------------------------------------------------------------------------------------------------
# OpenAI Responses (API.md 3.8), forwarded: every field as sent; usage from the final response


def _responses_text(output: Any) -> str:
    """The output text and call arguments of a Response's output items (the fallback for counting)."""
    parts: list[str] = []
    for item in output or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            parts.append(str(item.get("arguments") or ""))
        for part in item.get("content") or ():
            if isinstance(part, dict) and part.get("type") == "output_text":
                parts.append(str(part.get("text") or ""))
    return "".join(parts)


# The events whose `response` carries the final usage.
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


class OpenAIResponsesRelay:
    """Relays a Responses stream as sent; notes the response id (its owner is recorded before the
    client sees it) and the usage of the final response."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.output = OutputText()
        self.response_id: str | None = None
        self.sequence = -1
        self.rename: str | None = None

    def feed(self, event: Event) -> list[bytes]:
        kind = event.get("type")
        if isinstance(event.get("sequence_number"), int):
            self.sequence = event["sequence_number"]
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            self.output.append(str(event.get("delta") or ""))
        elif kind == "response.created":
            self.response_id = (event.get("response") or {}).get("id")
        elif kind in _RESPONSE_ENDS:
            self.usage = from_openai((event.get("response") or {}).get("usage")) or self.usage
        if self.rename is not None and isinstance(event.get("response"), dict) and "model" in event["response"]:
            event["response"]["model"] = self.rename
        return [typed_event(event)]

    def finish(self) -> list[bytes]:
        return []

    def fail(self, err: GatewayError) -> list[bytes]:
        error = err.body("openai")["error"]
        return [typed_event({"type": "error", "code": error["code"], "message": error["message"], "param": None,
                             "sequence_number": self.sequence + 1})]


class OpenAIResponsesPassthrough:
    """`/v1/responses` served by an upstream that speaks it: the body forwarded whole."""

    operation = "responses"
    headers = None

    def __init__(self, body: dict[str, Any], upstream_model: str, rename: str | None = None) -> None:
        self.body = {**body, "model": upstream_model}
        self.rename = rename

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        if self.rename is not None and "model" in data:
            data["model"] = self.rename
        return data, from_openai(data.get("usage")), _responses_text(data.get("output"))

    def translator(self) -> OpenAIResponsesRelay:
        relay = OpenAIResponsesRelay()
        relay.rename = self.rename
        return relay


def openai_responses_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, **_: Any) -> OpenAIResponsesPassthrough:
    return OpenAIResponsesPassthrough(body, spec.upstream_model, renamed(spec))
