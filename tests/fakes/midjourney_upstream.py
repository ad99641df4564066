"""A fake midjourney-proxy server on 127.0.0.1, speaking its wire format.

- `POST /mj/submit/{imagine,blend,describe,action,modal}` → `{code, description, result, properties}`;
  a prompt containing `queue-full` answers code 23, one containing `forbidden-word` code 24 (with
  `bannedWord`), one containing `broken` code 9. Every call must carry `mj-api-secret`.
- `GET /mj/task/{id}/fetch`, `POST /mj/task/list-by-condition` `{ids}` → tasks as midjourney-proxy
  shows them (`id`, `action`, `status`, `progress`, `imageUrl`, `failReason`, `buttons`, times in ms,
  `properties.finalPrompt`).
- `GET /images/{id}.png` → a real PNG (the "CDN").

Tests move a task along with `progress(id, status, progress)`; like the real server, each change is
POSTed to the task's `notifyHook` (from the server's thread, as the real one calls back).
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MJ_OPERATOR_SECRET = "mj-operator-secret-0123456789"
ACTIONS = {"imagine": "IMAGINE", "blend": "BLEND", "describe": "DESCRIBE"}


def png(width: int = 32, height: int = 24) -> bytes:
    rows = b"".join(b"\x00" + bytes(c for x in range(width) for c in (x * 7 % 256, y * 9 % 256, 128))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def grid_buttons(task_id: str) -> list[dict[str, Any]]:
    h = f"hash{task_id[-6:]}"
    return ([{"customId": f"MJ::JOB::upsample::{i}::{h}", "emoji": "", "label": f"U{i}", "type": 2, "style": 2}
             for i in range(1, 5)]
            + [{"customId": f"MJ::JOB::reroll::0::{h}::SOLO", "emoji": "🔄", "label": "", "type": 2, "style": 2}]
            + [{"customId": f"MJ::JOB::variation::{i}::{h}", "emoji": "", "label": f"V{i}", "type": 2, "style": 2}
               for i in range(1, 5)])


@dataclass
class Submitted:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeMidjourney:
    url: str = ""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    submitted: list[Submitted] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    unauthorised: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/mj/submit/{kind}", self.submit, methods=["POST"]),
            Route("/mj/task/{task_id}/fetch", self.fetch, methods=["GET"]),
            Route("/mj/task/list-by-condition", self.list_by_condition, methods=["POST"]),
            Route("/images/{name}", self.image, methods=["GET"]),
        ])

    def _authorised(self, request: Request) -> bool:
        if request.headers.get("mj-api-secret") == MJ_OPERATOR_SECRET:
            return True
        self.unauthorised += 1
        return False

    async def submit(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        kind = request.path_params["kind"]
        body = await request.json()
        self.submitted.append(Submitted(request.url.path, dict(request.headers), body))
        prompt = str(body.get("prompt") or "")
        if "queue-full" in prompt:
            return JSONResponse({"code": 23, "description": "队列已满，请稍后尝试", "result": None, "properties": {}})
        if "forbidden-word" in prompt:
            return JSONResponse({"code": 24, "description": "可能包含敏感词",
                                 "properties": {"promptEn": prompt, "bannedWord": "forbidden-word"}})
        if "broken" in prompt:
            return JSONResponse({"code": 9, "description": "系统异常", "result": None, "properties": {}})
        if kind == "action" and body.get("taskId") not in self.tasks:
            return JSONResponse({"code": 3, "description": "关联任务不存在或已失效", "result": None, "properties": {}})
        with self._lock:
            self._seq += 1
            task_id = f"{int(time.time() * 1000)}{self._seq:04d}"
        action = ACTIONS.get(kind, "UPSCALE" if "upsample" in str(body.get("customId")) else "VARIATION")
        self.tasks[task_id] = {
            "id": task_id, "action": action, "status": "NOT_START", "prompt": prompt, "promptEn": prompt,
            "description": f"/{action.lower()} {prompt}", "submitTime": int(time.time() * 1000), "startTime": None,
            "finishTime": None, "progress": "0%", "imageUrl": None, "failReason": None, "buttons": [],
            "properties": {"parentTaskId": body.get("taskId")},
        }
        if body.get("notifyHook"):
            self.hooks[task_id] = body["notifyHook"]
        return JSONResponse({"code": 1, "description": "提交成功", "result": task_id,
                             "properties": {"discordInstanceId": "1118138338562560102"}})

    async def fetch(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        task_id = request.path_params["task_id"]
        self.fetched.append(task_id)
        task = self.tasks.get(task_id)
        return JSONResponse(task) if task is not None else Response(b"", status_code=200)

    async def list_by_condition(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        ids = (await request.json()).get("ids") or []
        return JSONResponse([self.tasks[i] for i in ids if i in self.tasks])

    async def image(self, request: Request) -> Response:
        return Response(png(), media_type="image/png")

    # --- what tests do to a task ------------------------------------------------------------------
    def progress(self, task_id: str, status: str, progress: str = "", *, notify: bool = True,
                 fail_reason: str | None = None) -> dict[str, Any]:
        """Move the task as Discord would, and (as midjourney-proxy does) call its notifyHook."""
        task = self.tasks[task_id]
        now = int(time.time() * 1000)
        task["status"] = status
        task["progress"] = progress or ("100%" if status == "SUCCESS" else task["progress"])
        if status == "IN_PROGRESS" and task["startTime"] is None:
            task["startTime"] = now
        if status in ("SUCCESS", "FAILURE"):
            task["finishTime"] = now
        if status == "SUCCESS":
            task["imageUrl"] = f"{self.url}/images/{task_id}.png"
            if task["action"] == "DESCRIBE":
                task["properties"]["finalPrompt"] = "1️⃣ a cat in a hat --ar 1:1\n\n2️⃣ a hat on a cat --ar 1:1"
            elif task["action"] != "UPSCALE":
                task["buttons"] = grid_buttons(task_id)
        if status == "FAILURE":
            task["failReason"] = fail_reason or "[Invalid parameter] Invalid value"
            task["progress"] = ""
        snapshot = dict(task)
        if notify and task_id in self.hooks:
            self.notify(task_id, snapshot)
        return snapshot

    def notify(self, task_id: str, payload: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.hooks[task_id], json=payload, timeout=10)

    def last(self, kind: str) -> Submitted:
        return [s for s in self.submitted if s.path.endswith("/" + kind)][-1]
