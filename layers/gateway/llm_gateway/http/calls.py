"""One model call, whatever the route and the upstream: admit → provider → settle → respond.

Every model route (chat, messages, legacy completions, ...) builds a `Plan` — what to send upstream
and how to turn each answer or stream event back into its own family's shape — and hands it to
`serve_call`. Admission, settlement, timing, mid-stream failures and disconnects are handled here
once, so no route carries a second copy of the billing pipeline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Protocol

from starlette.requests import Request
from starlette.responses import Response

from .. import tokens
from ..admission.keys import Caller
from ..billing.settle import settle
from ..billing.usage import Usage
from ..catalog import ModelSpec
from ..errors import GatewayError
from ..providers.base import Event, EventStream
from ..runtime import Runtime
from .responses import JSON, EventStreamResponse


class StreamTranslator(Protocol):
    """Turns upstream events into the client's SSE bytes, keeping count of usage and output."""

    usage: Usage | None  # the latest usage the upstream reported, if any
    texts: list[str]  # output text sent so far (the fallback for counting)

    def feed(self, event: Event) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...
    def fail(self, err: GatewayError) -> list[bytes]: ...


class Plan(Protocol):
    """How one route serves one model."""

    path: str  # upstream path, e.g. "/chat/completions" or "/v1/messages"
    body: dict[str, Any]  # the upstream request body
    headers: dict[str, str] | None  # extra upstream headers (e.g. anthropic-beta)

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        """The client's response body, the upstream's usage (None: not reported) and the output text."""

    def translator(self) -> StreamTranslator: ...


def _fallback_usage(ticket_input: int, reported: Usage | None, texts: list[str], encoding: str) -> Usage:
    """Usage for an answer the upstream did not finish reporting: count what was produced."""
    counted = tokens.count_text("".join(texts), encoding)
    if reported is None:
        return Usage(input_tokens=ticket_input, output_tokens=counted)
    if not reported.total_input:
        reported.input_tokens = ticket_input
    reported.output_tokens = max(reported.output_tokens, counted)
    return reported


async def serve_call(
    request: Request,
    rt: Runtime,
    caller: Caller,
    spec: ModelSpec,
    plan: Plan,
    *,
    route: str,
    stream: bool,
    input_tokens: int,
    max_output_tokens: int | None,
) -> Response:
    state = request.scope["state"]
    info = state["log"]
    info["model"] = spec.name
    provider = rt.providers.get(spec.provider)
    provider.require_configured()
    ticket = rt.gate.admit(
        caller, spec, input_tokens=input_tokens, max_output_tokens=max_output_tokens,
        request_id=state["request_id"], route=route,
    )
    started = time.perf_counter()
    try:
        if not stream:
            data = await provider.send(plan.path, plan.body, model=spec.upstream_model, headers=plan.headers)
        else:
            events = await provider.stream(plan.path, plan.body, model=spec.upstream_model, headers=plan.headers)
    except BaseException as exc:
        settle(rt.store, ticket, None, status="error")
        info["status_detail"] = getattr(exc, "kind", type(exc).__name__)
        raise
    finally:
        state["upstream_s"] = time.perf_counter() - started

    if not stream:
        try:
            body, usage, text = plan.reply(data)
        except GatewayError:
            settle(rt.store, ticket, None, status="error")
            raise
        if usage is None:
            usage = _fallback_usage(input_tokens, None, [text], spec.encoding)
        record = settle(rt.store, ticket, usage)
        if record is not None:
            info["cost"] = record.cost
        return JSON(body)

    translator = plan.translator()
    return EventStreamResponse(
        _pump(rt, ticket, events, translator, input_tokens, spec.encoding, info),
        keepalive=rt.settings.sse_keepalive,
    )


async def _pump(
    rt: Runtime,
    ticket: Any,
    events: EventStream,
    translator: StreamTranslator,
    input_tokens: int,
    encoding: str,
    info: dict[str, Any],
) -> AsyncIterator[bytes]:
    def settle_as(status: str) -> None:
        reported = translator.usage
        usage = reported if status == "ok" and reported is not None else _fallback_usage(
            input_tokens, reported, translator.texts, encoding
        )
        record = settle(rt.store, ticket, usage, status=status)
        if record is not None:
            info["cost"] = record.cost
            info["stream_status"] = status

    try:
        try:
            async for event in events:
                for chunk in translator.feed(event):
                    yield chunk
        except GatewayError as err:
            # Settled before the closing events go out, so a client that has read the end of the
            # stream already sees its balance charged.
            info["status_detail"] = err.kind
            settle_as("upstream_error")
            tail = translator.fail(err)
        else:
            settle_as("ok")
            tail = translator.finish()
        for chunk in tail:
            yield chunk
    finally:
        # A client that left mid-stream: settle for what was produced. This runs under
        # cancellation, so it happens before anything that awaits.
        settle_as("client_closed")
        try:
            await asyncio.shield(events.aclose())
        except BaseException:  # noqa: BLE001 - closing a dead upstream must not mask the outcome
            pass
