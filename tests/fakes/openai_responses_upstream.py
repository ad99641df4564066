"""OpenAI's Responses API for the fake OpenAI upstream (`FakeOpenAI` mounts these routes).

`POST /v1/responses` answers whole or as the real event sequence (`response.created`,
`response.in_progress`, `output_item.added`, `content_part.added`, `output_text.delta`…,
`output_text.done`, `content_part.done`, `output_item.done`, `response.completed`, each with its
`sequence_number`); it keeps every response with `store` not false, for `GET`/`DELETE
/v1/responses/{id}` and `/input_items`, and refuses a `previous_response_id` it does not keep, as
OpenAI does. Behaviours (per model, `FakeOpenAI.behaviors`): `text`, `status`, `delay`, `cached`
(2 of the 11 input tokens cached), `tool_call` {"name", "arguments"}, `fail_after` (drop the
stream after this many text deltas). Usage: input 11, output 7.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

_ids = itertools.count(1)


class ResponsesFake:
    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.kept: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}  # id -> (response, input items)

    def _usage(self, behavior: dict) -> dict[str, Any]:
        return {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 2 if behavior.get("cached") else 0},
                "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18}

    def _authorised(self, request: Request) -> bool:
        if request.url.path.startswith("/openai/"):
            return request.headers.get("api-key") == self.fake.api_key
        return request.headers.get("authorization") == f"Bearer {self.fake.api_key}"

    async def create(self, request: Request) -> Response:
        refused, body, behavior = await self.fake._admit(request, legacy=True)
        if refused is not None:
            return refused
        previous = body.get("previous_response_id")
        if previous and previous not in self.kept:
            return self.fake._error(400, f"Previous response with id '{previous}' not found.")
        number = next(_ids)
        rid = f"resp_fake{number:04d}"
        text = behavior.get("text", "Hello from the fake upstream")
        tool = behavior.get("tool_call")
        item = ({"id": f"fc_fake{number}", "type": "function_call", "status": "completed", "call_id": f"call_{number}",
                 "name": tool["name"], "arguments": tool["arguments"]} if tool else
                {"id": f"msg_fake{number}", "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
        response = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": body["model"], "output": [item], "usage": self._usage(behavior), "error": None,
                    "incomplete_details": None, "instructions": body.get("instructions"), "tools": body.get("tools") or [],
                    "tool_choice": "auto", "parallel_tool_calls": True, "metadata": body.get("metadata") or {},
                    "previous_response_id": previous, "store": body.get("store", True)}
        if body.get("store", True) is not False:
            raw = body.get("input")
            items = [{"id": f"msg_in{number}", "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": raw}]}] if isinstance(raw, str) else list(raw or [])
            self.kept[rid] = (response, items)
        if not body.get("stream"):
            return JSONResponse(response)
        return StreamingResponse(self._events(response, item, text, behavior), media_type="text/event-stream")

    async def _events(self, response: dict, item: dict, text: str, behavior: dict):
        sequence = itertools.count()

        def event(data: dict[str, Any]) -> bytes:
            data["sequence_number"] = next(sequence)
            return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

        start = {**response, "status": "in_progress", "output": [], "usage": None}
        yield event({"type": "response.created", "response": start})
        yield event({"type": "response.in_progress", "response": start})
        ref = {"item_id": item["id"], "output_index": 0}
        if item["type"] == "function_call":
            yield event({"type": "response.output_item.added", "output_index": 0,
                         "item": {**item, "status": "in_progress", "arguments": ""}})
            yield event({"type": "response.function_call_arguments.delta", **ref, "delta": item["arguments"]})
            yield event({"type": "response.function_call_arguments.done", **ref, "arguments": item["arguments"]})
        else:
            yield event({"type": "response.output_item.added", "output_index": 0,
                         "item": {**item, "status": "in_progress", "content": []}})
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event({"type": "response.content_part.added", **ref, "content_index": 0, "part": empty})
            for n, word in enumerate(text.split(" ")):
                if behavior.get("fail_after") is not None and n >= behavior["fail_after"]:
                    raise RuntimeError("fake upstream drops the connection")
                if behavior.get("chunk_delay"):
                    await asyncio.sleep(behavior["chunk_delay"])
                yield event({"type": "response.output_text.delta", **ref, "content_index": 0,
                             "delta": word if n == 0 else " " + word, "logprobs": []})
            yield event({"type": "response.output_text.done", **ref, "content_index": 0, "text": text, "logprobs": []})
            yield event({"type": "response.content_part.done", **ref, "content_index": 0,
                         "part": item["content"][0]})
        yield event({"type": "response.output_item.done", "output_index": 0, "item": item})
        yield event({"type": "response.completed", "response": response})

    def _found(self, request: Request) -> tuple[Response | None, str]:
        if not self._authorised(request):
            return self.fake._error(401, "Incorrect API key provided."), ""
        rid = request.path_params["response_id"]
        if self.fake.record:
            from tests.fakes.openai_upstream import Received

            self.fake.received.append(Received(request.url.path, dict(request.headers),
                                               {"method": request.method, **request.query_params}))
        if rid not in self.kept:
            return self.fake._error(404, f"No response found with id '{rid}'."), rid
        return None, rid

    async def get(self, request: Request) -> Response:
        refused, rid = self._found(request)
        return refused or JSONResponse(self.kept[rid][0])

    async def delete(self, request: Request) -> Response:
        refused, rid = self._found(request)
        if refused is not None:
            return refused
        del self.kept[rid]
        return JSONResponse({"id": rid, "object": "response", "deleted": True})

    async def input_items(self, request: Request) -> Response:
        refused, rid = self._found(request)
        if refused is not None:
            return refused
        items = self.kept[rid][1]
        return JSONResponse({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                             "last_id": items[-1]["id"] if items else None, "has_more": False})
