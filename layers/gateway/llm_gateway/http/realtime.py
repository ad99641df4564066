"""OpenAI's Realtime API relayed over a WebSocket (API.md 3.9): `GET /v1/realtime?model=...`.

Served by `llm-gateway serve` only: a Lambda function cannot hold a WebSocket, so no function mounts
this family. The key comes in `Authorization` or, from browsers, in the `openai-insecure-api-key.<key>`
subprotocol. Admission happens at connect: the key, the model's permission and kind, one request
against the rate limits, and funds for a minimum (the model's per-request price, or one minute of
audio at its prices) reserved for the session. Every `response.done` the upstream sends is charged as
it arrives, once per response id, with a usage record of its own; when the user's balance or the key's
spending cap is used up, the session ends with an `error` event. However the session ends (either
side closing, the upstream failing), its reservation is settled: the minimum is released and the
model's per-request price, if any, charged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..admission.gate import require_kind
from ..admission.keys import Caller, key_from_headers
from ..billing.reservation import Ticket
from ..billing.settle import charge, write
from ..billing.usage import Usage
from ..catalog import ModelSpec
from ..errors import GatewayError
from ..runtime import Runtime

router = APIRouter()

KEY_PROTOCOL = "openai-insecure-api-key."
# One minute of audio, as OpenAI counts it: 10 input tokens a second, 20 output tokens a second.
MINUTE_OF_AUDIO = Usage(audio_input_tokens=600, audio_output_tokens=1200, requests=0)


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.runtime
    offered = [p.strip() for p in (ws.headers.get("sec-websocket-protocol") or "").split(",") if p.strip()]
    # the key's subprotocol is never echoed back: the handshake answer names only "realtime"
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    try:
        who, spec, ticket = await _admit(rt, ws, offered)
    except GatewayError as err:
        await _refuse(ws, err)
        return
    try:
        await Session(rt, ws, who, spec, ticket).run()
    finally:
        # However the session ended, its reservation is settled once: released, with the model's
        # per-request price charged if it has one.
        record = charge(ticket, Usage(), "ok")
        if record is not None:
            await rt.blocking.finish(write, rt.store, record)


async def _admit(rt: Runtime, ws: WebSocket, offered: list[str]) -> tuple[Caller, ModelSpec, Ticket]:
    presented = key_from_headers(ws.headers.get("authorization"), ws.headers.get("x-api-key"))
    if presented is None:
        presented = next((p[len(KEY_PROTOCOL):] for p in offered if p.startswith(KEY_PROTOCOL)), None)
    who: Caller = await rt.blocking(rt.keys.resolve, presented)
    model = ws.query_params.get("model")
    if not model:
        raise GatewayError("invalid_request", "Missing required parameter: 'model'.", param="model")
    if rt.catalogs.stale():
        await rt.blocking(rt.catalogs.current)
    spec = rt.gate.model_for(who, model)
    require_kind(spec, "realtime", "/v1/realtime")
    provider = rt.providers.get(spec.provider)
    if getattr(provider, "realtime_url", None) is None:
        raise GatewayError("invalid_request", f"The model '{model}' has no realtime upstream.", param="model")
    provider.require_configured()
    minimum = Usage(requests=1) if spec.prices.per_request else MINUTE_OF_AUDIO
    ticket = await rt.blocking.finish(
        rt.gate.admit, who, spec, input_tokens=0, max_output_tokens=None, expected=minimum,
        request_id="rt_" + secrets.token_hex(12), route="realtime",
    )
    return who, spec, ticket


async def _refuse(ws: WebSocket, err: GatewayError) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(orjson.dumps(_error_event(err)).decode())
        await ws.close(code=1008 if err.status in (401, 402, 403) else 1011)


def _error_event(err: GatewayError) -> dict[str, Any]:
    body = err.body("openai")["error"]
    return {"type": "error", "error": {"type": body["type"], "code": body["code"], "message": body["message"],
                                       "param": body["param"]}}


def realtime_usage(usage: dict[str, Any] | None) -> Usage:
    """Usage of one `response.done`: text and audio tokens apart, cached input at the cached price."""
    usage = usage if isinstance(usage, dict) else {}
    details_in = usage.get("input_token_details") or {}
    details_out = usage.get("output_token_details") or {}
    cached = details_in.get("cached_tokens_details") or {}
    cached_text = int(cached.get("text_tokens") or 0)
    cached_audio = int(cached.get("audio_tokens") or 0)
    if not cached and details_in.get("cached_tokens"):
        cached_text = int(details_in["cached_tokens"])
    text_in = int(details_in.get("text_tokens", usage.get("input_tokens") or 0) or 0)
    audio_in = int(details_in.get("audio_tokens") or 0)
    text_out = int(details_out.get("text_tokens", usage.get("output_tokens") or 0) or 0)
    audio_out = int(details_out.get("audio_tokens") or 0)
    return Usage(
        input_tokens=max(text_in - cached_text, 0), audio_input_tokens=max(audio_in - cached_audio, 0),
        cache_read_tokens=cached_text + cached_audio, output_tokens=text_out, audio_output_tokens=audio_out,
        requests=0,
    )


class Session:
    """One relayed session: client ⇄ upstream, charging each `response.done` once."""

    def __init__(self, rt: Runtime, ws: WebSocket, who: Caller, spec: ModelSpec, ticket: Ticket) -> None:
        self.rt, self.ws, self.who, self.spec, self.ticket = rt, ws, who, spec, ticket
        self.charged: set[str] = set()

    async def run(self) -> None:
        import websockets

        provider = self.rt.providers.get(self.spec.provider)
        try:
            upstream = await websockets.connect(
                provider.realtime_url(self.spec.upstream_model), additional_headers=provider.headers(),
                open_timeout=self.rt.settings.upstream_timeout, max_size=None,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            await _refuse(self.ws, GatewayError("upstream_error",
                                                f"Could not reach the {provider.name} realtime upstream "
                                                f"({type(exc).__name__})."))
            return
        async with upstream:
            tasks = [asyncio.create_task(self._client_to_upstream(upstream)),
                     asyncio.create_task(self._upstream_to_client(upstream))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def _client_to_upstream(self, upstream: Any) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

    async def _upstream_to_client(self, upstream: Any) -> None:
        import websockets

        try:
            async for message in upstream:
                if isinstance(message, str) and '"response.done"' in message:
                    exhausted = await self._charge(orjson.loads(message))
                    await self.ws.send_text(message)
                    if exhausted is not None:
                        await _refuse(self.ws, exhausted)
                        return
                elif isinstance(message, str):
                    await self.ws.send_text(message)
                else:
                    await self.ws.send_bytes(message)
        except websockets.WebSocketException:
            await _refuse(self.ws, GatewayError("upstream_error", "The realtime upstream connection broke."))

    async def _charge(self, event: dict[str, Any]) -> GatewayError | None:
        """Charge one `response.done` (once per response id); the refusal that ends the session when
        the balance or the key's cap is used up."""
        if event.get("type") != "response.done":
            return None
        response = event.get("response") or {}
        response_id = str(response.get("id") or len(self.charged))
        if response_id in self.charged:
            return None
        self.charged.add(response_id)
        part = replace(self.ticket, request_id=f"{self.ticket.request_id}:{response_id}", reserved=0, settled=False)
        record = charge(part, realtime_usage(response.get("usage")), "ok")
        if record is not None:
            await self.rt.blocking.finish(write, self.rt.store, record)
        user = await self.rt.blocking(self.rt.store.get_user, self.who.user_id)
        key = await self.rt.blocking(self.rt.store.get_key, self.who.key.key_id)
        if user is not None and user.balance < 0:
            return GatewayError("insufficient_balance", "Insufficient balance: the realtime session has ended.")
        left = key.fee_remaining() if key is not None else None
        if left is not None and left < 0:
            return GatewayError("insufficient_balance",
                                "This API key's spending cap is reached: the realtime session has ended.")
        return None
