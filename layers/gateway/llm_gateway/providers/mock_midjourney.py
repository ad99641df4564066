"""The mock provider's Midjourney: every submission is accepted, and its task runs SUBMITTED →
IN_PROGRESS (rising progress) → SUCCESS over `GATEWAY_MJ_MOCK_SECONDS` (default 4) with a real PNG.

It keeps no state: a task's id carries its submission time and action, and its state at any moment
is computed from them, so every process (every Lambda container) answers the same for it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from . import mock_media
from .midjourney import action_of

DEFAULT_SECONDS = 4.0
IMAGE_SIDE = 256
_SUBMIT_ACTIONS = {"imagine": "IMAGINE", "blend": "BLEND", "describe": "DESCRIBE"}


def _buttons(action: str, seed: str) -> list[dict[str, str]]:
    """Midjourney's buttons under a result: a grid (U1-U4, reroll, V1-V4) or an upscale's tools."""
    if action == "DESCRIBE":
        return []
    if action == "UPSCALE":
        tools = [("Outpaint::50", "🔍", "Zoom Out 2x"), ("Outpaint::75", "🔍", "Zoom Out 1.5x"),
                 ("JOB::pan_left", "⬅️", ""), ("JOB::pan_right", "➡️", ""), ("JOB::pan_up", "⬆️", ""),
                 ("JOB::pan_down", "⬇️", ""), ("JOB::high_variation", "🪄", "Vary (Strong)")]
        return [{"customId": f"MJ::{kind}::1::{seed}::SOLO", "emoji": emoji, "label": label}
                for kind, emoji, label in tools]
    grid = [{"customId": f"MJ::JOB::upsample::{i}::{seed}", "emoji": "", "label": f"U{i}"} for i in range(1, 5)]
    grid.append({"customId": f"MJ::JOB::reroll::0::{seed}::SOLO", "emoji": "🔄", "label": ""})
    grid += [{"customId": f"MJ::JOB::variation::{i}::{seed}", "emoji": "", "label": f"V{i}"} for i in range(1, 5)]
    return grid


class MockMidjourney:
    def __init__(self, seconds: float = DEFAULT_SECONDS) -> None:
        self.seconds = max(0.1, seconds)

    def submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        action = _SUBMIT_ACTIONS.get(kind) or action_of(str(body.get("customId") or "")) or "VARIATION"
        upstream_id = f"mock-{int(time.time() * 1000)}-{action}-{uuid.uuid4().hex[:12]}"
        return {"code": 1, "description": "Submitted", "result": upstream_id, "properties": {}}

    def fetch(self, upstream_id: str) -> dict[str, Any] | None:
        parts = upstream_id.split("-")
        if len(parts) != 4 or parts[0] != "mock" or not parts[1].isdigit():
            return None
        submitted, action = int(parts[1]) / 1000, parts[2]
        elapsed = time.time() - submitted
        task: dict[str, Any] = {"id": upstream_id, "action": action, "submitTime": int(submitted * 1000),
                                "status": "SUBMITTED", "progress": "0%", "imageUrl": None, "failReason": None,
                                "buttons": [], "properties": {}}
        if elapsed >= self.seconds * 0.2:
            task.update(status="IN_PROGRESS", startTime=int((submitted + self.seconds * 0.2) * 1000),
                        progress=f"{min(99, int(100 * elapsed / self.seconds)) // 5 * 5}%")
        if elapsed >= self.seconds:
            seed = hashlib.sha256(upstream_id.encode()).hexdigest()[:32]
            task.update(status="SUCCESS", progress="100%", finishTime=int((submitted + self.seconds) * 1000),
                        imageUrl=f"mock://midjourney/{upstream_id}.png", buttons=_buttons(action, seed))
            if action == "DESCRIBE":
                task["properties"]["finalPrompt"] = "\n\n".join(
                    f"{n}\ufe0f\u20e3 a mock description, variant {n} --ar 1:1" for n in range(1, 5))
        return task

    def image(self, url: str) -> tuple[bytes, str]:
        return mock_media.png(IMAGE_SIDE, IMAGE_SIDE, seed=url), "image/png"
