"""A fake AWS Bedrock runtime on 127.0.0.1: SigV4 checked with botocore, answers in Bedrock's wire.

- Every request's SigV4 signature is recomputed with botocore's own signer (`botocore.auth.SigV4Auth`)
  from the request as received (raw path, signed headers, exact body) and the fake's credentials; a
  mismatch, an unknown access key or a wrong service/region is a 403 as Bedrock answers it.
- InvokeModel (`/model/{id}/invoke`) takes Anthropic's Messages body (`anthropic_version:
  bedrock-2023-05-31`, no `model`, no `stream`) and answers an Anthropic message.
- InvokeModelWithResponseStream answers AWS's binary event stream: each Anthropic event base64 in a
  `chunk` event, the last one carrying `amazon-bedrock-invocationMetrics`. Converse / ConverseStream
  answer Converse's JSON and events. Frames are encoded by moto's event-stream encoder and each is
  read back through botocore's parser before it is sent.

Behaviour per model id through `FakeBedrock.behaviors`: `status` (an HTTP error), `throttle_in_stream`
(an exception message instead of the first event), `text`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from moto.core.eventstream import EventStreamEncoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ACCESS_KEY = "AKIDFAKEBEDROCK00001"
SECRET_KEY = "fake-bedrock-secret-key-never-sent-000000"
REGION = "us-west-2"
EVENT_STREAM = "application/vnd.amazon.eventstream"


@dataclass
class Seen:
    operation: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeBedrock:
    behaviors: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Seen] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/model/{model_id:path}/" + op, self._handler(op), methods=["POST"])
                                 for op in ("invoke", "invoke-with-response-stream", "converse", "converse-stream")])

    def requests_for(self, model_id: str) -> list[Seen]:
        return [r for r in self.received if r.model_id == model_id]

    def _handler(self, operation: str):
        async def handle(request: Request) -> Response:
            raw = await request.body()
            refused = _check_signature(request, raw)
            if refused is not None:
                return _error(403, refused, "AccessDeniedException")
            model_id = unquote(request.path_params["model_id"])
            body = json.loads(raw)
            self.received.append(Seen(operation, model_id, dict(request.headers), body))
            behavior = self.behaviors.get(model_id, {})
            if behavior.get("status"):
                return _error(behavior["status"], "fake bedrock error", "ThrottlingException")
            text = behavior.get("text", "Hello from fake Bedrock")
            if operation.startswith("invoke"):
                if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body or "stream" in body:
                    return _error(400, "Malformed input request: anthropic_version, no model or stream", "ValidationException")
                if operation == "invoke":
                    return JSONResponse(_claude_message(text))
                return _frames(behavior, [("chunk", {"bytes": base64.b64encode(json.dumps(e).encode()).decode()})
                                          for e in _claude_events(text)])
            if not body.get("messages") or "model" in body:
                return _error(400, "messages required; the model goes in the path", "ValidationException")
            usage = {"inputTokens": 21, "outputTokens": 5, "totalTokens": 26}
            if operation == "converse":
                return JSONResponse({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                                     "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 12}})
            words = text.split(" ")
            events = [("messageStart", {"role": "assistant"})]
            events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w + (" " if i < len(words) - 1 else "")}})
                       for i, w in enumerate(words)]
            events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"}),
                       ("metadata", {"usage": usage, "metrics": {"latencyMs": 12}})]
            return _frames(behavior, events)

        return handle


def _check_signature(request: Request, raw: bytes) -> str | None:
    """None when the request carries a valid SigV4 signature of the fake's credentials, else why not."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "Missing Authentication Token"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key, date, region, service, _ = parts["Credential"].split("/")
    if key != ACCESS_KEY or region != REGION or service != "bedrock":
        return "The security token included in the request is invalid."
    signed = parts["SignedHeaders"].split(";")
    url = f"http://{request.headers['host']}{request.scope['raw_path'].decode()}"
    again = AWSRequest(method="POST", url=url, data=raw, headers={h: request.headers[h] for h in signed})
    again.context["timestamp"] = request.headers["x-amz-date"]
    token = request.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), service, region)
    canonical = signer.canonical_request(again)
    expected = signer.signature(signer.string_to_sign(again, canonical), again)
    if expected != parts["Signature"] or date != request.headers["x-amz-date"][:8]:
        return "The request signature we calculated does not match the signature you provided."
    return None


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": kind})


def _frames(behavior: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> Response:
    encoder = EventStreamEncoder()
    if behavior.get("throttle_in_stream"):
        frames = [encoder.encode_message({":message-type": "exception", ":exception-type": "throttlingException",
                                          ":content-type": "application/json"},
                                         json.dumps({"message": "Too many requests"}).encode())]
    else:
        frames = [encoder.encode_message({":message-type": "event", ":event-type": kind,
                                          ":content-type": "application/json"}, json.dumps(payload).encode())
                  for kind, payload in events]
    for frame in frames:  # each frame as botocore reads it: the fake speaks the real wire or fails here
        parser = EventStreamBuffer()
        parser.add_data(frame)
        assert len(list(parser)) == 1
    return Response(b"".join(frames), media_type=EVENT_STREAM)


def _claude_message(text: str) -> dict[str, Any]:
    return {"id": "msg_bdrk_fake", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 17, "output_tokens": 6}}


def _claude_events(text: str) -> list[dict[str, Any]]:
    message = {**_claude_message(""), "content": [], "stop_reason": None,
               "usage": {"input_tokens": 17, "output_tokens": 1}}
    words = text.split(" ")
    deltas = [{"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": w + (" " if i < len(words) - 1 else "")}}
              for i, w in enumerate(words)]
    return [{"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *deltas,
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 6}},
            {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 17, "outputTokenCount": 6, "invocationLatency": 40, "firstByteLatency": 10}}]
