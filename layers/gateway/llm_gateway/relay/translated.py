"""Plans for every route × upstream wire pair, composed from the pure translators in `translate/`.

A `TranslatedPlan` is: the upstream request, the upstream's *wire* (which says how to read usage and
output text from its answers, for billing), the client's *family* (how its events are framed, how
its stream ends and fails), and a chain of conversions from the upstream's answer to the client's.
The legacy routes reuse the modern chains and add one stage (`then`), so an answer is never mapped
by two copies of the same logic; `serve_call` runs every one of them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from ..billing.usage import Usage, from_anthropic, from_openai
from ..catalog import ModelSpec
from ..errors import GatewayError
from ..http.sse import (
    OPENAI_DONE,
    anthropic_error_events,
    anthropic_event,
    openai_error_events,
    openai_event,
    typed_event,
)
from ..providers.base import Event
from ..providers.openai import prepare_body
from ..translate.chat_claude import DEFAULT_MAX_TOKENS, ChatChunks, chat_to_messages, message_parts, message_to_chat
from ..translate.legacy import (
    CompletionEvents,
    TextCompletionChunks,
    chat_to_text_completion,
    completion_to_chat,
    message_to_completion,
)
from ..translate.messages_openai import MessageEvents, chat_to_message, messages_to_chat
from ..translate.responses_claude import ResponseEvents, message_to_response
from .output import OutputText
from .passthrough import _openai_text, renamed

__all__ = [
    "TranslatedPlan",
    "claude_chat_plan",
    "claude_completions_plan",
    "anthropic_messages_plan",
    "openai_messages_plan",
    "as_legacy_complete",
    "as_responses",
    "default_max_tokens",
]



class Stage(Protocol):
    """One step of a stream's conversion: events in, events out (pure, stateful per stream)."""

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]: ...
    def finish(self) -> list[dict[str, Any]]: ...


def default_max_tokens(spec: ModelSpec) -> int:
    """The output cap sent when the client gave none (the Messages API requires one)."""
    return min(DEFAULT_MAX_TOKENS, spec.max_output_tokens)


# --------------------------------------------------------------------------------------------------
# wires (what the upstream speaks) and families (what the client speaks)


@dataclass(frozen=True)
class Wire:
    observe: Callable[[Event, TranslatedStream], None]  # usage and text from one stream event
    read: Callable[[dict[str, Any]], tuple[Usage | None, str]]  # usage and text from a whole answer


def _observe_anthropic(event: Event, stream: TranslatedStream) -> None:
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        text = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
        if text:
            stream.output.append(text)
    elif kind == "message_start":
        stream.usage = from_anthropic((event.get("message") or {}).get("usage"), into=stream.usage)
    elif kind == "message_delta":
        stream.usage = from_anthropic(event.get("usage"), into=stream.usage)


def _read_anthropic(data: dict[str, Any]) -> tuple[Usage | None, str]:
    texts, thoughts, calls = message_parts(data)
    arguments = [call["function"]["arguments"] for call in calls]
    return from_anthropic(data.get("usage")), "".join(texts + thoughts + arguments)


def _observe_openai(event: Event, stream: TranslatedStream) -> None:
    if event.get("usage"):
        stream.usage = from_openai(event["usage"])
    text = _openai_text(event.get("choices"), False)
    if text:
        stream.output.append(text)


def _read_openai(data: dict[str, Any]) -> tuple[Usage | None, str]:
    return from_openai(data.get("usage")), _openai_text(data.get("choices"), False)


ANTHROPIC_WIRE = Wire(_observe_anthropic, _read_anthropic)
OPENAI_WIRE = Wire(_observe_openai, _read_openai)


@dataclass(frozen=True)
class Family:
    frame: Callable[[dict[str, Any]], bytes]
    end: tuple[bytes, ...]
    fail: Callable[[GatewayError], list[bytes]]


OPENAI_CLIENT = Family(openai_event, (OPENAI_DONE,), openai_error_events)
ANTHROPIC_CLIENT = Family(anthropic_event, (), anthropic_error_events)
# OpenAI Responses: typed events, no end marker; a failure is framed by the last stage, whose events
# carry sequence numbers (`TranslatedStream.fail`), so this family's own `fail` is never the one used.
RESPONSES_CLIENT = Family(typed_event, (), openai_error_events)


# --------------------------------------------------------------------------------------------------
# the plan and its stream translator


class TranslatedStream:
    """`StreamTranslator` for a translated plan: observe the upstream event, convert, frame."""

    def __init__(self, wire: Wire, stages: list[Stage], family: Family) -> None:
        self.usage: Usage | None = None
        self.output = OutputText()
        self._observe = wire.observe
        self._stages = stages
        self._family = family

    def feed(self, event: Event) -> list[bytes]:
        self._observe(event, self)
        events = [event]
        for stage in self._stages:
            events = [out for e in events for out in stage.feed(e)] if len(events) != 1 else stage.feed(events[0])
        frame = self._family.frame
        return [frame(e) for e in events]

    def finish(self) -> list[bytes]:
        events: list[dict[str, Any]] = []
        for stage in self._stages:
            events = [out for e in events for out in stage.feed(e)] + stage.finish()
        frame = self._family.frame
        return [frame(e) for e in events] + list(self._family.end)

    def fail(self, err: GatewayError) -> list[bytes]:
        failing = getattr(self._stages[-1], "fail", None) if self._stages else None
        if failing is not None:  # a stage whose stream ends in events of its own (Responses)
            error = err.body("openai")["error"]
            return [self._family.frame(e) for e in failing(error["code"] or error["type"], error["message"])]
        return self._family.fail(err)

    @property
    def last_stage(self) -> Stage | None:
        return self._stages[-1] if self._stages else None


@dataclass(frozen=True)
class TranslatedPlan:
    operation: str  # what the provider is asked to do ("chat", "messages", ...)
    body: dict[str, Any]
    wire: Wire
    family: Family
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    stages: Sequence[Callable[[], Stage]] = ()
    headers: dict[str, str] | None = None

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        usage, text = self.wire.read(data)
        return self.convert(data), usage, text

    def translator(self) -> TranslatedStream:
        return TranslatedStream(self.wire, [make() for make in self.stages], self.family)

    def then(
        self,
        convert: Callable[[dict[str, Any]], dict[str, Any]],
        stage: Callable[[], Stage],
        family: Family | None = None,
    ) -> TranslatedPlan:
        """This plan with one more conversion after its own (a legacy shape over a modern one)."""
        inner = self.convert
        return replace(
            self,
            convert=lambda data: convert(inner(data)),
            stages=(*self.stages, stage),
            family=family or self.family,
        )


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


# --------------------------------------------------------------------------------------------------
# plans per (route, upstream wire): `relay.plans` picks one


def claude_chat_plan(spec: ModelSpec, chat: dict[str, Any], stream: bool, **_: Any) -> TranslatedPlan:
    """An OpenAI chat request served by an Anthropic-wire model."""
    request = chat_to_messages(chat, model=spec.upstream_model, default_max_tokens=default_max_tokens(spec))
    options = chat.get("stream_options")
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return TranslatedPlan(
        "messages",
        request.body,
        ANTHROPIC_WIRE,
        OPENAI_CLIENT,
        partial(message_to_chat, model=spec.name, json_tool=request.json_tool),
        (partial(ChatChunks, model=spec.name, include_usage=include_usage, json_tool=request.json_tool),),
    )


def claude_completions_plan(spec: ModelSpec, body: dict[str, Any], stream: bool, **_: Any) -> TranslatedPlan:
    """Legacy OpenAI completions served by an Anthropic-wire model: through chat."""
    return claude_chat_plan(spec, completion_to_chat(body), stream).then(chat_to_text_completion, TextCompletionChunks)


def anthropic_messages_plan(
    spec: ModelSpec, body: dict[str, Any], stream: bool, *, headers: dict[str, str] | None = None, **_: Any
) -> TranslatedPlan:
    """A Messages request to an Anthropic-wire model: forwarded whole, with the client's headers."""
    name = renamed(spec)
    if name is not None:  # served under another upstream id: answers still name the model asked for
        return TranslatedPlan("messages", {**body, "model": spec.upstream_model}, ANTHROPIC_WIRE, ANTHROPIC_CLIENT,
                              partial(_named, model=name), (partial(_MessageRenamed, name),), headers=headers)
    return TranslatedPlan(
        "messages", {**body, "model": spec.upstream_model}, ANTHROPIC_WIRE, ANTHROPIC_CLIENT, _same, headers=headers,
    )


def _named(data: dict[str, Any], model: str) -> dict[str, Any]:
    if "model" in data:
        data["model"] = model
    return data


class _MessageRenamed:
    """A stage naming `model` in a Messages stream's `message_start` (the one event that names it)."""

    def __init__(self, model: str) -> None:
        self.model = model

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        message = event.get("message")
        if isinstance(message, dict) and "model" in message:
            message["model"] = self.model
        return [event]

    def finish(self) -> list[dict[str, Any]]:
        return []


def openai_messages_plan(
    spec: ModelSpec, body: dict[str, Any], stream: bool, *, input_tokens: int = 0, **_: Any
) -> TranslatedPlan:
    """A Messages request to an OpenAI-wire model: translated to chat and back."""
    chat = prepare_body(messages_to_chat(body, model=spec.upstream_model), spec.upstream_model, stream)
    return TranslatedPlan(
        "chat",
        chat,
        OPENAI_WIRE,
        ANTHROPIC_CLIENT,
        partial(chat_to_message, model=spec.name),
        (partial(MessageEvents, model=spec.name, input_tokens=input_tokens),),
    )


def as_legacy_complete(plan: TranslatedPlan, spec: ModelSpec) -> TranslatedPlan:
    """`/v1/complete` over a Messages plan: the Messages answer, then the legacy shape."""
    return plan.then(partial(message_to_completion, model=spec.name), partial(CompletionEvents, model=spec.name))


def as_responses(plan: TranslatedPlan, shell: dict[str, Any], json_tool: str | None) -> TranslatedPlan:
    """`/v1/responses` over a Messages plan (whatever the model's wire): the Messages answer, then the
    Response (`shell` is the Response as the request defines it)."""
    return plan.then(partial(message_to_response, shell=shell, json_tool=json_tool),
                     partial(ResponseEvents, shell=shell, json_tool=json_tool), RESPONSES_CLIENT)
