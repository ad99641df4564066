"""A task as clients see it (the Task JSON of API.md 5.2), and what an upstream's view of a task
(midjourney-proxy's task JSON, from a fetch or a callback) changes in ours. Pure functions."""

from __future__ import annotations

import time
from typing import Any

from ..store.base import TASK_RANKS, TaskRecord
from ..times import iso

# The catalog model that prices each action (per pool), API.md 5.2.
ACTION_MODELS = {
    "IMAGINE": "mj-imagine", "VARIATION": "mj-variation", "UPSCALE": "mj-upscale", "REROLL": "mj-reroll",
    "ZOOM": "mj-zoom", "PAN": "mj-pan", "BLEND": "mj-blend", "DESCRIBE": "mj-describe",
}
POOLS = ("FAST", "NORMAL")
FILES_ROUTE = "/api/v1/f/pub/"


def public(task: TaskRecord, base_url: str) -> dict[str, Any]:
    """The Task JSON: what the query routes answer and what webhooks carry."""
    return {
        "taskId": task.task_id,
        "taskType": task.pool,
        "status": task.status,
        "action": task.action,
        "progress": f"{task.progress}%",
        "description": task.description,
        "prompt": task.prompt,
        "failReason": task.fail_reason or None,
        "submitTime": iso(task.submit_time),
        "startTime": iso(task.start_time),
        "finishTime": iso(task.finish_time),
        "webhookUrl": task.webhook_url or None,
        "imageDcUrl": task.image_dc_url or None,
        "imageS3Url": f"{base_url}{FILES_ROUTE}{task.file_id}" if task.file_id else None,
        "actions": task.actions,
    }


def _percent(value: Any) -> int | None:
    text = str(value or "").strip().rstrip("%")
    try:
        return max(0, min(100, int(float(text))))
    except ValueError:
        return None


def _seconds(value: Any) -> float | None:
    return value / 1000 if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def step(task: TaskRecord, upstream: dict[str, Any]) -> tuple[str, int, dict[str, Any]] | None:
    """The (status, progress, other changes) that `upstream`'s view of the task brings to ours, or
    None when it brings no step forward (the store's conditional write has the last word)."""
    status = str(upstream.get("status") or "")
    if status not in TASK_RANKS:
        return None
    progress = _percent(upstream.get("progress"))
    if status == "SUCCESS":
        progress = 100
    elif status == "FAILURE":
        progress = task.progress  # the upstream blanks it; ours stays where it was
    elif progress is None:
        progress = task.progress
    rank = TASK_RANKS[status]
    if not (rank > task.rank or (rank == task.rank and not task.final and progress > task.progress)):
        return None
    changes: dict[str, Any] = {"updated_at": time.time()}
    if rank >= TASK_RANKS["IN_PROGRESS"] and task.start_time is None:
        changes["start_time"] = _seconds(upstream.get("startTime")) or time.time()
    if status in ("SUCCESS", "FAILURE"):
        changes["finish_time"] = _seconds(upstream.get("finishTime")) or time.time()
    image = upstream.get("imageUrl")
    if isinstance(image, str) and image:
        changes["image_dc_url"] = image
    if status == "FAILURE":
        changes["fail_reason"] = str(upstream.get("failReason") or "The upstream reported a failure.")
    buttons = upstream.get("buttons")
    if status == "SUCCESS" and isinstance(buttons, list):
        changes["actions"] = [
            {"customId": str(b.get("customId")), "emoji": str(b.get("emoji") or ""), "label": str(b.get("label") or "")}
            for b in buttons if isinstance(b, dict) and b.get("customId")
        ]
    properties = upstream.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    described = properties.get("finalPrompt") or (upstream.get("prompt") if task.action == "DESCRIBE" else None)
    if status == "SUCCESS" and task.action == "DESCRIBE" and described:
        changes["prompt"] = str(described)
    return status, progress, changes
