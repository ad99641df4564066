"""A fake OpenAI API that speaks the real wire format, for tests and benchmarks.

It records every request it receives (headers and JSON body) so tests can assert what the
gateway sent upstream. Behaviour is chosen per upstream model id through `FakeOpenAI.behaviors`:
  status       answer this HTTP status with an OpenAI error body
  retry_after  with `status`: the Retry-After header (seconds) to send with it
  delay        seconds to wait before answering (or before the first chunk)
  chunk_delay  seconds between stream chunks
  fail_after   break the stream (drop the connection) after this many content chunks
  error_event  after `fail_after` chunks, send an in-stream error event instead of dropping
  usage        False: never report usage; or a dict to report instead of the default
  text         the answer's text (default: "Hello from the fake upstream")
  tool_call    {"name", "arguments"}: answer with one tool call instead of text
Default usage: prompt_tokens 11 (2 of them cached when `cached` is set), completion_tokens 7.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

OPERATOR_KEY = "sk-operator-upstream-credential-0000000000000000"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""  # the body's exact bytes
    query: str = ""  # the query string (Azure's api-version)


@dataclass
class FakeOpenAI:
    api_key: str = OPERATOR_KEY
    behaviors: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    record: bool = True  # benchmarks turn recording off

    def app(self) -> Starlette:
        from tests.fakes.openai_realtime_upstream import realtime
        from tests.fakes.openai_responses_upstream import ResponsesFake

        self.responses = responses = ResponsesFake(self)
        self.realtime_received: list[tuple[str, dict]] = []

        async def realtime_route(ws):
            await realtime(self, ws)

        return Starlette(routes=[
            WebSocketRoute("/v1/realtime", realtime_route),
            Route("/v1/responses", responses.create, methods=["POST"]),
            Route("/v1/responses/{response_id}", responses.get, methods=["GET"]),
            Route("/v1/responses/{response_id}", responses.delete, methods=["DELETE"]),
            Route("/v1/responses/{response_id}/input_items", responses.input_items, methods=["GET"]),
            Route("/openai/v1/responses", responses.create, methods=["POST"]),  # Azure's v1 surface
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/images/generations", self.images, methods=["POST"]),
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
            # Azure OpenAI: the deployment in the path, the key in `api-key`, an api-version
            Route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"]),
            Route("/openai/deployments/{deployment}/images/generations", self.images, methods=["POST"]),
        ])

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.received if r.body.get("model") == model]

    # ------------------------------------------------------------------------------------------
    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> Response:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                            status_code=status)

    async def _admit(self, request: Request, legacy: bool) -> tuple[Response | None, dict, dict]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "We could not parse the JSON body of your request."), {}, {}
        if self.record:
            self.received.append(Received(request.url.path, dict(request.headers), body, raw, request.url.query))
        if request.url.path.startswith("/openai/v1/"):  # Azure's v1 surface: no api-version, model in the body
            if request.headers.get("api-key") != self.api_key:
                return self._error(401, "Access denied due to invalid subscription key.", "invalid_request_error"), body, {}
        elif request.url.path.startswith("/openai/deployments/"):  # Azure: the deployment names the model
            body.setdefault("model", request.path_params["deployment"])
            if request.headers.get("api-key") != self.api_key or not request.query_params.get("api-version"):
                return self._error(401, "Access denied due to invalid subscription key.", "invalid_request_error"), body, {}
        elif request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided: sk-abc***xyz.", "invalid_request_error"), body, {}
        if "model" not in body:
            return self._error(400, "you must provide a model parameter"), body, {}
        if not legacy and not body.get("messages"):
            return self._error(400, "'messages' is a required property"), body, {}
        behavior = self.behaviors.get(body["model"], {})
        if behavior.get("delay"):
            await asyncio.sleep(behavior["delay"])
        if behavior.get("status"):
            status = behavior["status"]
            refused = self._error(status, behavior.get("message", f"fake upstream error {status}"))
            if behavior.get("retry_after"):
                refused.headers["retry-after"] = str(behavior["retry_after"])
            return refused, body, behavior
        return None, body, behavior

    def _usage(self, behavior: dict) -> dict[str, Any] | None:
        usage = behavior.get("usage", True)
        if usage is False:
            return None
        if isinstance(usage, dict):
            return usage
        out: dict[str, Any] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if behavior.get("cached"):
            out["prompt_tokens_details"] = {"cached_tokens": 2, "audio_tokens": 0}
        return out

    async def chat(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, legacy=False)
        if refused is not None:
            return refused
        text = behavior.get("text", "Hello from the fake upstream")
        tool = behavior.get("tool_call")
        created = int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool else text, "refusal": None}
            finish = "stop"
            if tool:
                message["tool_calls"] = [{"id": "call_fake1", "type": "function",
                                          "function": {"name": tool["name"], "arguments": tool["arguments"]}}]
                finish = "tool_calls"
            out = {"id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": body["model"],
                   "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                   "system_fingerprint": "fp_fake"}
            usage = self._usage(behavior)
            if usage is not None:
                out["usage"] = usage
            if behavior.get("gzip") and "gzip" in request.headers.get("accept-encoding", ""):
                return Response(gzip.compress(json.dumps(out).encode()), media_type="application/json",
                                headers={"content-encoding": "gzip"})
            return JSONResponse(out)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._chat_stream(body, behavior, text, tool, include_usage, created),
                                 media_type="text/event-stream")

    async def _chat_stream(self, body, behavior, text, tool, include_usage, created):
        def chunk(delta: dict | None, finish: str | None = None, usage: Any = "absent") -> bytes:
            data: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                                    "model": body["model"], "system_fingerprint": "fp_fake",
                                    "choices": [] if delta is None else
                                    [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None if usage == "absent" else usage
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": "" if not tool else None})
        pieces = [tool["arguments"][i:i + 5] for i in range(0, len(tool["arguments"]), 5)] if tool else \
            [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
        for i, piece in enumerate(pieces):
            if behavior.get("fail_after") is not None and i >= behavior["fail_after"]:
                if behavior.get("error_event"):
                    err = {"error": {"message": "The server had an error while processing your request.",
                                     "type": "server_error", "param": None, "code": None}}
                    yield b"data: " + json.dumps(err).encode() + b"\n\n"
                    return
                raise RuntimeError("fake upstream drops the connection")
            if behavior.get("chunk_delay"):
                await asyncio.sleep(behavior["chunk_delay"])
            if tool:
                delta: dict[str, Any] = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                if i == 0:
                    delta["tool_calls"][0].update({"id": "call_fake1", "type": "function"})
                    delta["tool_calls"][0]["function"]["name"] = tool["name"]
                yield chunk(delta)
            else:
                yield chunk({"content": piece})
        yield chunk({}, "tool_calls" if tool else "stop")
        usage = self._usage(behavior)
        if include_usage and usage is not None:
            yield chunk(None, usage=usage)
        yield b"data: [DONE]\n\n"

    async def completions(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, legacy=True)
        if refused is not None:
            return refused
        text = behavior.get("text", "Hello from the fake upstream")
        created = int(time.time())
        usage = self._usage(behavior)
        if not body.get("stream"):
            out = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": body["model"],
                   "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}]}
            if usage is not None:
                out["usage"] = usage
            return JSONResponse(out)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events():
            for word in text.split(" "):
                data = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": body["model"],
                        "choices": [{"index": 0, "text": word + " ", "logprobs": None, "finish_reason": None}]}
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
            data = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": body["model"],
                    "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]}
            yield b"data: " + json.dumps(data).encode() + b"\n\n"
            if include_usage and usage is not None:
                data = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": body["model"],
                        "choices": [], "usage": usage}
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # ------------------------------------------------------------------------------------------
    # embeddings, images and speech, in OpenAI's shapes

    async def embeddings(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, legacy=True)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and all(isinstance(i, int) for i in inputs):
            inputs = [inputs]  # one array of token ids
        dims = body.get("dimensions") or 8
        data = []
        for index, _item in enumerate(inputs):
            vector = [round(0.1 * (index + 1) + 0.01 * d, 4) for d in range(dims)]
            if body.get("encoding_format") == "base64":
                import base64
                import struct

                embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = behavior.get("prompt_tokens", sum(len(i) if isinstance(i, list) else len(str(i).split())
                                                    for i in inputs))
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def images(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, legacy=True)
        if refused is not None:
            return refused
        n = body.get("n") or 1
        if body.get("response_format") == "url":
            data = [{"url": f"https://images.example/fake-{i}.png", "revised_prompt": body.get("prompt")}
                    for i in range(n)]
        else:
            data = [{"b64_json": "iVBORw0KGgo=", "revised_prompt": body.get("prompt")} for _ in range(n)]
        out: dict[str, Any] = {"created": int(time.time()), "data": data}
        if behavior.get("image_usage"):
            out["usage"] = behavior["image_usage"]
        return JSONResponse(out)

    SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                    "wav": "audio/wav", "pcm": "audio/pcm"}

    async def speech(self, request: Request) -> Response:
        refused, body, behavior = await self._admit(request, legacy=True)
        if refused is not None:
            return refused
        fmt = body.get("response_format") or "mp3"
        chunks = behavior.get("audio_chunks", [b"FAKE-AUDIO-" + fmt.encode() + b"-%d;" % i for i in range(4)])

        async def audio():
            for i, chunk in enumerate(chunks):
                if behavior.get("fail_after") is not None and i >= behavior["fail_after"]:
                    raise RuntimeError("fake upstream drops the connection")
                if behavior.get("chunk_delay"):
                    await asyncio.sleep(behavior["chunk_delay"])
                yield chunk

        return StreamingResponse(audio(), media_type=self.SPEECH_TYPES.get(fmt, "audio/mpeg"))
