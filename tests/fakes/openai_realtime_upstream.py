"""OpenAI's Realtime API for the fake OpenAI upstream (`FakeOpenAI` mounts it at `/v1/realtime`).

It refuses a handshake without the operator's key, sends `session.created`, and answers each
client `response.create` with `response.created` then `response.done` carrying usage (per model,
`FakeOpenAI.behaviors[model]["realtime_usage"]`, default 100 text + 200 audio tokens in, 20 text +
40 audio tokens out, 10 of the text input cached). `duplicate_done`: send each `response.done`
twice (the gateway must charge it once); `drop_after`: drop the connection after that many
responses. Every message received is recorded in `FakeOpenAI.realtime_received`.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

DEFAULT_USAGE = {
    "total_tokens": 360, "input_tokens": 300, "output_tokens": 60,
    "input_token_details": {"text_tokens": 100, "audio_tokens": 200, "cached_tokens": 10,
                            "cached_tokens_details": {"text_tokens": 10, "audio_tokens": 0}},
    "output_token_details": {"text_tokens": 20, "audio_tokens": 40},
}
_ids = itertools.count(1)


async def realtime(fake: Any, ws: WebSocket) -> None:
    if ws.headers.get("authorization") != f"Bearer {fake.api_key}":
        await ws.close(code=1008)
        return
    model = ws.query_params.get("model", "")
    behavior = fake.behaviors.get(model, {})
    await ws.accept()
    await ws.send_text(json.dumps({"type": "session.created", "session": {"model": model}}))
    answered = 0
    try:
        while True:
            event = json.loads(await ws.receive_text())
            fake.realtime_received.append((model, event))
            if event.get("type") != "response.create":
                continue
            if behavior.get("drop_after") is not None and answered >= behavior["drop_after"]:
                await ws.close(code=1011)
                return
            rid = f"resp_rt{next(_ids)}"
            await ws.send_text(json.dumps({"type": "response.created", "response": {"id": rid, "status": "in_progress"}}))
            done = json.dumps({"type": "response.done", "event_id": f"ev_{rid}", "response": {
                "id": rid, "status": "completed", "usage": behavior.get("realtime_usage", DEFAULT_USAGE)}})
            for _ in range(2 if behavior.get("duplicate_done") else 1):
                await ws.send_text(done)
            answered += 1
    except WebSocketDisconnect:
        return
