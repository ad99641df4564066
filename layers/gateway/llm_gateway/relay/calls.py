"""One model call, whatever the route and the upstream: admit → provider → settle → respond.

Every model route (chat, messages, legacy completions, ...) builds a `Plan` — what to send upstream
and how to turn each answer or stream event back into its own family's shape — and hands it to
`serve_call`. Admission, settlement, timing, mid-stream failures and disconnects are handled here
once, so no route carries a second copy of the billing pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import logs, tokens
from ..admission.keys import Caller
from ..billing.reservation import Ticket
from ..billing.settle import charge, settle, write
from ..billing.usage import Usage
from ..catalog import ModelSpec
from ..catalog.channels import Route
from ..errors import GatewayError, UpstreamError
from ..http.context import RequestContext, context
from ..http.responses import JSON, EventStreamResponse
from ..providers.base import Event, EventStream
from ..runtime import Runtime
from ..store.base import UsageRecord
from . import idle
from .output import OutputText


class StreamTranslator(Protocol):
    """Turns upstream events into the client's SSE bytes, keeping count of usage and output."""

    usage: Usage | None  # the latest usage the upstream reported, if any
    output: OutputText  # output text sent so far (the fallback for counting)

    def feed(self, event: Event) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...
    def fail(self, err: GatewayError) -> list[bytes]: ...


class Plan(Protocol):
    """How one route serves one model."""

    @property
    def operation(self) -> str:
        """What the provider is asked to do: "chat", "completions", "messages", ..."""

    @property
    def body(self) -> dict[str, Any]:
        """The upstream request body."""

    @property
    def headers(self) -> dict[str, str] | None:
        """Extra upstream headers (e.g. anthropic-beta)."""

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        """The client's response body, the upstream's usage (None: not reported) and the output text."""

    def translator(self) -> StreamTranslator: ...


async def settle_off_loop(rt: Runtime, ticket: Ticket, usage: Usage | None, status: str) -> UsageRecord | None:
    """Settle `ticket` exactly once: the outcome is fixed now, on the loop; the store write runs on a
    thread and completes even if this request is cancelled meanwhile."""
    record = charge(ticket, usage, status)
    if record is None:
        return None
    return await rt.blocking.finish(write, rt.store, record, rt.parking)


def _fallback_usage(ticket_input: int, reported: Usage | None, text: str, encoding: str) -> Usage:
    """Usage for an answer the upstream did not finish reporting: count what was produced."""
    counted = tokens.count_text(text, encoding)
    if reported is None:
        return Usage(input_tokens=ticket_input, output_tokens=counted)
    if not reported.total_input:
        reported.input_tokens = ticket_input
    reported.output_tokens = max(reported.output_tokens, counted)
    return reported


def serve_call(
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
    expected: Usage | None = None,
) -> Coroutine[Any, Any, Response]:
    """The call, to be awaited. `expected`: what the call will use, where it is not tokens in and
    out (images, characters). A plain function choosing the coroutine, so that a non-streamed call
    with no idle pad (the default) runs exactly as many coroutine layers as a stream."""
    if stream:
        return _streamed(request, rt, caller, spec, plan, route, input_tokens, max_output_tokens, expected)
    answer = _answered(request, rt, caller, spec, plan, route, input_tokens, max_output_tokens, expected)
    if rt.settings.idle_pad_seconds:  # behind an idle cut (API Gateway's, on the streaming functions)
        return idle.padded(answer, rt.settings.idle_pad_seconds, request.scope["path"], context(request))
    return answer


async def _answered(request: Request, rt: Runtime, caller: Caller, spec: ModelSpec, plan: Plan, route: str,
                    input_tokens: int, max_output_tokens: int | None, expected: Usage | None) -> Response:
    """A non-streamed call: the upstream's answer in the route's shape, charged once."""
    ctx, channels, ticket = await _admitted(request, rt, caller, spec, route, input_tokens, max_output_tokens,
                                            expected)
    async with _upstream(rt, ctx, ticket):
        data = await _call(rt, ctx, ticket, channels, "send", plan.operation, plan.body, plan.headers)
    try:
        body, usage, text = plan.reply(data)
    except GatewayError:
        await settle_off_loop(rt, ticket, None, "error")
        raise
    if usage is None:
        usage = _fallback_usage(input_tokens, None, text, spec.encoding)
    record = await settle_off_loop(rt, ticket, usage, "ok")
    if record is not None:
        ctx.cost = record.cost
    return JSON(body)


async def _streamed(request: Request, rt: Runtime, caller: Caller, spec: ModelSpec, plan: Plan, route: str,
                    input_tokens: int, max_output_tokens: int | None, expected: Usage | None) -> Response:
    ctx, channels, ticket = await _admitted(request, rt, caller, spec, route, input_tokens, max_output_tokens,
                                            expected)
    async with _upstream(rt, ctx, ticket):
        events = await _call(rt, ctx, ticket, channels, "stream", plan.operation, plan.body, plan.headers)
    translator = plan.translator()
    return EventStreamResponse(
        _pump(rt, ticket, events, translator, input_tokens, spec.encoding, ctx),
        keepalive=rt.settings.sse_keepalive,
    )


class BytesPlan(Protocol):
    """A call whose answer is raw bytes (audio) relayed as they arrive; what it uses is known before
    the call (the characters of its text), and it is charged once the upstream accepts it."""

    @property
    def operation(self) -> str: ...

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def headers(self) -> dict[str, str] | None:
        """Extra upstream headers (e.g. the audio format asked for)."""


async def serve_bytes(request: Request, rt: Runtime, caller: Caller, spec: ModelSpec, plan: BytesPlan, *,
                      route: str) -> Response:
    ctx, channels, ticket = await _admitted(request, rt, caller, spec, route, 0, None, plan.usage)
    async with _upstream(rt, ctx, ticket):
        answer = await _call(rt, ctx, ticket, channels, "open_bytes", plan.operation, plan.body, plan.headers)
    # The upstream accepted the call and bills it whatever becomes of the bytes: so does the gateway.
    record = await settle_off_loop(rt, ticket, plan.usage, "ok")
    if record is not None:
        ctx.cost = record.cost

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.chunks:
                yield chunk
        except GatewayError as err:
            # The head has gone out: the connection is cut, so the client sees an incomplete answer
            # rather than a short one that looks whole.
            ctx.status_detail = err.kind
            raise
        finally:
            await asyncio.shield(answer.close())

    return StreamingResponse(relay(), media_type=answer.media_type)


@asynccontextmanager
async def _upstream(rt: Runtime, ctx: RequestContext, ticket: Ticket) -> AsyncIterator[None]:
    """Around the wait for an upstream's answer (to its first event, on streams): its time, kept
    apart from the gateway's own; and on any failure, the reservation released, charging nothing."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        await settle_off_loop(rt, ticket, None, "error")
        ctx.status_detail = getattr(exc, "kind", type(exc).__name__)
        raise
    finally:
        ctx.upstream_s = time.perf_counter() - started


async def _call(rt: Runtime, ctx: RequestContext, ticket: Ticket, channels: Route, how: str, operation: str,
                body: dict[str, Any], headers: dict[str, str] | None) -> Any:
    """The upstream's answer (`how`: the provider's "send", "stream" or "open_bytes"), from the
    model's one channel, or failing over across its channels (API.md 7)."""
    hop = channels.single
    if hop is None:
        return await _failover(rt, ctx, ticket, channels, how, operation, body, headers)
    ctx.channel = ticket.channel = hop.channel.name
    ctx.attempts = 1
    return await getattr(hop.provider, how)(operation, hop.body(body), model=hop.model, headers=headers)


async def _failover(rt: Runtime, ctx: RequestContext, ticket: Ticket, channels: Route, how: str, operation: str,
                    body: dict[str, Any], headers: dict[str, str] | None) -> Any:
    """Channel after channel (by priority, weighted within one, cooling ones skipped) until one
    answers, at most `GATEWAY_MAX_ATTEMPTS`: only failures another channel may not share move on
    (`GatewayError.retryable`); the client's own (400, 404, 422) are answered. A stream is returned
    once its first event has arrived and before any byte reaches the client, so a failure to start
    moves on while a failure later never does. The last failure is the caller's."""
    router = rt.router
    failed: GatewayError | None = None
    attempts = 0
    for hop in channels.order(router.cooling, router.max_attempts):
        attempts += 1
        ctx.channel = ticket.channel = hop.channel.name
        ctx.attempts = ticket.attempts = attempts
        try:
            return await getattr(hop.provider, how)(operation, hop.body(body), model=hop.model, headers=headers)
        except GatewayError as err:
            if not err.retryable:
                raise
            router.cool(hop, err)
            logs.log("channel failed", level=logging.WARNING, request_id=ctx.request_id, channel=hop.channel.name,
                     attempt=attempts, kind=err.kind)
            failed = err
    raise failed or UpstreamError("upstream_error", f"No enabled channel serves the model '{channels.model}'.")


async def _admitted(
    request: Request, rt: Runtime, caller: Caller, spec: ModelSpec, route: str, input_tokens: int,
    max_output_tokens: int | None, expected: Usage | None,
) -> tuple[RequestContext, Route, Ticket]:
    """The request's context, its channels, and its reservation. Admission reserves money: if this
    request is cancelled while the store works, the reservation is released as soon as it exists,
    in the store's thread."""
    ctx = context(request)
    ctx.model = spec.name
    channels = rt.router.route(rt.catalogs.last, spec)
    if channels.single is not None:
        channels.single.provider.require_configured()
    elif not channels.groups:
        raise UpstreamError("upstream_error", f"No enabled channel serves the model '{spec.name}'.")
    ticket = await rt.blocking.finish(
        rt.gate.admit, caller, spec, input_tokens=input_tokens, max_output_tokens=max_output_tokens,
        expected=expected, request_id=ctx.request_id, route=route,
        undo=partial(settle, rt.store, usage=None, status="error"),
    )
    ctx.rate = ticket.rate
    return ctx, channels, ticket


async def _pump(
    rt: Runtime,
    ticket: Any,
    events: EventStream,
    translator: StreamTranslator,
    input_tokens: int,
    encoding: str,
    ctx: RequestContext,
) -> AsyncIterator[bytes]:
    async def settle_as(status: str) -> None:
        if ticket.settled:
            return
        reported = translator.usage
        usage = reported if status == "ok" and reported is not None else _fallback_usage(
            input_tokens, reported, str(translator.output), encoding
        )
        record = await settle_off_loop(rt, ticket, usage, status)
        if record is not None:
            ctx.cost = record.cost
            ctx.stream_status = status

    try:
        try:
            async for event in events:
                for chunk in translator.feed(event):
                    yield chunk
        except GatewayError as err:
            # Settled before the closing events go out, so a client that has read the end of the
            # stream already sees its balance charged.
            ctx.status_detail = err.kind
            await settle_as("upstream_error")
            tail = translator.fail(err)
        else:
            await settle_as("ok")
            tail = translator.finish()
        for chunk in tail:
            yield chunk
    finally:
        # A client that left mid-stream: settle for what was produced. This runs under
        # cancellation: the charge is decided here, before the first await, and its write completes
        # in the store's thread even if the wait for it is cut short.
        await settle_as("client_closed")
        try:
            await asyncio.shield(events.aclose())
        except BaseException:  # noqa: BLE001 - closing a dead upstream must not mask the outcome
            pass
