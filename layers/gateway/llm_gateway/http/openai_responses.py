"""OpenAI's Responses API (API.md 3.8): `POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}` and
`GET /v1/responses/{id}/input_items`, for every chat model of the catalog.

A model whose upstream serves the Responses API (OpenAI, Azure) is forwarded to; any other (Claude,
the mock) is translated through the Messages API (`relay.plans`). Either way the gateway records
which user created each response id, because every user shares the operator's upstream account: an
id that is not the caller's own is the same 404 as an unknown one, on every route here and as a
`previous_response_id`. For a translated model the gateway also keeps the response itself (its
input and output items, 30 days, unless `store` is false), so the conversation continues from it.
These routes belong to the chat family (its Lambda function streams).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from .. import tokens
from ..admission.gate import output_allowance, require_kind
from ..admission.keys import Caller
from ..billing.usage import Usage
from ..catalog import ModelSpec
from ..errors import GatewayError, invalid
from ..relay.calls import Plan, StreamTranslator, serve_call
from ..relay.plans import forwards_responses, plan_for
from ..runtime import Runtime
from ..store.base import StoredResponse
from ..translate.responses_claude import response_input, response_shell, responses_to_chat
from .body import parse_body
from .deps import authorized, caller, runtime
from .direct import direct
from .responses import JSON
from .shapes import ResponsesRequest, check

router = APIRouter()


@router.post("/v1/responses")
@direct
async def create_response(request: Request) -> Response:
    rt, who = await authorized(request)
    body = await parse_body(request, rt.settings.max_body_bytes, forms=False)
    check(ResponsesRequest, body)
    stream = bool(body.get("stream"))
    spec = rt.gate.model_for(who, body["model"])
    require_kind(spec, "chat", request.scope["path"])
    previous = None
    if body.get("previous_response_id"):
        previous = await _owned(rt, who, body["previous_response_id"], param="previous_response_id")
    keep = body.get("store", True) is not False

    if forwards_responses(spec):
        if previous is not None and previous.document is not None:
            body = _continued_upstream(body, previous)
        chat = responses_to_chat(body, model=spec.upstream_model, strict=False)
        input_tokens = _input_tokens(spec, chat)
        watched = Watched(plan_for("responses", spec, body, stream), _owner_of(who, spec) if keep else None)
    else:
        if previous is not None and previous.document is None:
            raise invalid(f"The response '{previous.response_id}' was answered by another provider's model: "
                          f"'{spec.name}' cannot continue it.", "previous_response_id")
        history = _history(previous)
        chat = responses_to_chat(body, model=spec.upstream_model, history=history)
        input_tokens = _input_tokens(spec, chat)
        response_id = "resp_" + secrets.token_hex(24)
        shell = response_shell(body, response_id=response_id, model=spec.name, created_at=int(time.time()))
        items = [*history, *response_input(body, response_id.removeprefix("resp_"))]
        plan = plan_for("responses", spec, body, stream, chat=chat, shell=shell, input_tokens=input_tokens)
        watched = Watched(plan, _document_of(who, spec, items) if keep else None)

    answer = await serve_call(
        request, rt, who, spec, watched,
        route="responses", stream=stream, input_tokens=input_tokens,
        max_output_tokens=output_allowance(
            spec, body, ("max_output_tokens",),
            default=watched.body.get("max_tokens") or watched.body.get("max_completion_tokens"),
        ),
    )

    async def keep_record(record: StoredResponse) -> None:
        await rt.blocking.finish(rt.store.put_response, record)

    if not isinstance(answer, StreamingResponse):  # a slow answer padded for an idle cut streams (relay/idle.py)
        record = watched.ready()
        if record is not None:
            await keep_record(record)
        return answer
    answer.body_iterator = _recording(answer.body_iterator, watched, keep_record)  # type: ignore[arg-type]
    return answer


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request, who: Caller = Depends(caller),
                       rt: Runtime = Depends(runtime)) -> Response:
    record = await _owned(rt, who, response_id)
    if record.document is None:
        return JSON(await _upstream(rt, record, "GET", f"/{response_id}", dict(request.query_params)))
    return JSON(orjson.loads(record.document)["response"])


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)
                          ) -> Response:
    record = await _owned(rt, who, response_id)
    if record.document is None:
        answer = await _upstream(rt, record, "DELETE", f"/{response_id}", {})
    else:
        answer = {"id": response_id, "object": "response", "deleted": True}
    await rt.blocking(rt.store.delete_response, response_id)
    return JSON(answer)


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request, who: Caller = Depends(caller),
                           rt: Runtime = Depends(runtime)) -> Response:
    record = await _owned(rt, who, response_id)
    params = dict(request.query_params)
    if record.document is None:
        return JSON(await _upstream(rt, record, "GET", f"/{response_id}/input_items", params))
    return JSON(input_items_page(orjson.loads(record.document)["input_items"], params))


def input_items_page(items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
    """One page of a kept response's input items, as OpenAI lists them: `limit` (1-100, default
    20), `order` (`desc`, the default, or `asc`), `after` an item id."""
    try:
        limit = int(params.get("limit") or 20)
    except ValueError:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit") from None
    if not 1 <= limit <= 100:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit")
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid("Invalid 'order': expected 'asc' or 'desc'.", "order")
    ordered = items[::-1] if order == "desc" else list(items)
    after = params.get("after")
    if after:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
    page = ordered[:limit]
    return {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None, "has_more": len(ordered) > limit}


# --------------------------------------------------------------------------------------------------


class Watched:
    """A plan run unchanged by `serve_call`, whose answer (whole, or its stream's translator) is kept
    in view: what the gateway records about the response comes from it."""

    def __init__(self, plan: Plan, record: Callable[[dict[str, Any]], StoredResponse] | None) -> None:
        self.plan = plan
        self.operation = plan.operation
        self.body = plan.body
        self.headers = plan.headers
        self._record = record
        self._answer: dict[str, Any] | None = None
        self._stream: StreamTranslator | None = None
        self.kept = record is None  # nothing to keep: done already

    def reply(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage | None, str]:
        body, usage, text = self.plan.reply(data)
        self._answer = body
        return body, usage, text

    def translator(self) -> StreamTranslator:
        self._stream = self.plan.translator()
        return self._stream

    def ready(self) -> StoredResponse | None:
        """The record to keep, once the answer tells it (then only once): a forwarded stream's id
        arrives with `response.created`; a translated stream's response with its last event."""
        if self.kept or self._record is None:
            return None
        found = self._answer
        if found is None and self._stream is not None:
            relay_id = getattr(self._stream, "response_id", None)
            if relay_id:
                found = {"id": relay_id}
            last: Any = getattr(self._stream, "last_stage", None)
            if getattr(last, "done", False) and last.response["status"] in ("completed", "incomplete"):
                found = last.response
        if not found or not found.get("id"):
            return None
        self.kept = True
        return self._record(found)


def _owner_of(who: Caller, spec: ModelSpec) -> Callable[[dict[str, Any]], StoredResponse]:
    return lambda answer: StoredResponse(answer["id"], who.user_id, spec.name, time.time())


def _document_of(who: Caller, spec: ModelSpec, items: list[dict[str, Any]]
                 ) -> Callable[[dict[str, Any]], StoredResponse]:
    def record(answer: dict[str, Any]) -> StoredResponse:
        document = orjson.dumps({"response": answer, "input_items": items}).decode()
        return StoredResponse(answer["id"], who.user_id, spec.name, time.time(), document)
    return record


async def _recording(chunks: AsyncIterator[bytes], watched: Watched,
                     keep: Callable[[StoredResponse], Awaitable[None]]) -> AsyncIterator[bytes]:
    """The stream as it is, with the response recorded before the client sees the event that
    names it (a client may use the id as soon as it has it)."""
    try:
        async for chunk in chunks:
            if not watched.kept:
                record = watched.ready()
                if record is not None:
                    await keep(record)
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await asyncio.shield(close())


async def _owned(rt: Runtime, who: Caller, response_id: str, param: str | None = None) -> StoredResponse:
    """The caller's own response; anyone else's is exactly as unknown as an id never issued."""
    record = await rt.blocking(rt.store.get_response, response_id)
    if record is None or record.user_id != who.user_id:
        raise GatewayError("not_found", f"No response found with id '{response_id}'.", param=param)
    return record


async def _upstream(rt: Runtime, record: StoredResponse, method: str, tail: str, params: dict[str, str]
                    ) -> dict[str, Any]:
    """A forwarded response is the upstream's to show or delete, through the model that made it."""
    spec = rt.catalogs.current().get(record.model)
    if spec is None or not forwards_responses(spec):
        raise GatewayError("not_found", f"No response found with id '{tail.split('/')[1]}'.")
    provider = rt.providers.get(spec.provider)
    answer: dict[str, Any] = await provider.call(method, "responses", tail, params)
    return answer


def _history(previous: StoredResponse | None) -> list[dict[str, Any]]:
    """The conversation a kept response ends: its input items, then its output items."""
    if previous is None or previous.document is None:
        return []
    document = orjson.loads(previous.document)
    return [*document["input_items"], *document["response"].get("output", [])]


def _continued_upstream(body: dict[str, Any], previous: StoredResponse) -> dict[str, Any]:
    """A forwarded request continuing a translated model's response: the upstream does not know that
    id, so the conversation travels as input (without the gateway's own item ids and reasoning)."""
    items = [{k: v for k, v in item.items() if k not in ("id", "status")}
             for item in [*_history(previous), *response_input(body, "in")] if item.get("type") != "reasoning"]
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = items
    return out


def _input_tokens(spec: ModelSpec, chat: dict[str, Any]) -> int:
    return tokens.count_messages(chat["messages"], spec.encoding, tools=chat.get("tools"))
