"""A midjourney-proxy compatible server (`MIDJOURNEY_BASE_URL`, `/mj/...` appended), authenticated by
the operator's `MIDJOURNEY_API_SECRET` in the `mj-api-secret` header.

Its wire: `POST /mj/submit/{imagine,blend,describe,action,modal}` answers `{code, description,
result, properties}` (`result` is the upstream task id); `GET /mj/task/{id}/fetch` answers the task
(`id`, `action`, `status`, `progress`, `imageUrl`, `failReason`, `buttons`, `properties.finalPrompt`,
times in epoch milliseconds); `POST /mj/task/list-by-condition` with `{ids}` answers a list of them.
What the codes mean for the caller is llm_gateway.tasks' business; this adapter only carries them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from ..config import Settings
from ..errors import UpstreamError
from .base import TRANSPORT_ERRORS, HTTPProvider, missing, raise_for_upstream

SUBMISSIONS = ("imagine", "blend", "describe", "action", "modal")
# The most image bytes a task's result may have (Midjourney's upscales are a few MB).
MAX_IMAGE_BYTES = 32 * 1024 * 1024


class MidjourneyProvider(HTTPProvider):
    name = "midjourney"
    follow_redirects = True
    paths = {**{f"mj-{kind}": f"/mj/submit/{kind}" for kind in SUBMISSIONS},
             "mj-list": "/mj/task/list-by-condition"}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.secret = settings.secret("MIDJOURNEY_API_SECRET")
        self.base_url = (settings.secret("MIDJOURNEY_BASE_URL") or "").rstrip("/")

    def require_configured(self) -> None:
        if not self.base_url:
            raise missing("MIDJOURNEY_BASE_URL", self.name)

    def url(self, path: str, model: str) -> str:
        return self.base_url + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {"content-type": "application/json"}
        if self.secret:
            out["mj-api-secret"] = self.secret
        return out


    # --- what llm_gateway.tasks asks of a task upstream -------------------------------------------
    async def task_submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """The submission's answer, whatever its code (`{code, description, result, properties}`)."""
        return await self.send(f"mj-{kind}", body, model="midjourney")

    async def task_fetch(self, upstream_id: str) -> dict[str, Any] | None:
        """The upstream's task, None when it does not know it."""
        self.require_configured()
        answer = await self._get(f"{self.base_url}/mj/task/{upstream_id}/fetch", self.headers())
        if answer.status_code == 404 or not answer.content.strip():
            return None
        data = self.json_answer(answer.status_code, answer.content, answer.headers)
        return data if data.get("id") else None

    async def task_list(self, upstream_ids: list[str]) -> list[dict[str, Any]]:
        """The upstream's tasks of these ids (those it knows), in one call."""
        self.require_configured()
        url, headers, content = self._request("mj-list", "midjourney", {"ids": upstream_ids}, None)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.pool.post(url, headers, content)
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None
        if answer.status >= 400:
            raise_for_upstream(answer.status, answer.content, answer.headers, self.name)
        try:
            tasks = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream_error", "The midjourney provider sent an unreadable answer.") from None
        return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []

    async def task_image(self, url: str) -> tuple[bytes, str]:
        """The bytes and content type of a task's image (the upstream's CDN; no credentials sent)."""
        answer = await self._get(url, {})
        if answer.status_code >= 400:
            raise UpstreamError("upstream_error", f"The task's image could not be read (HTTP {answer.status_code}).")
        if len(answer.content) > MAX_IMAGE_BYTES:
            raise UpstreamError("upstream_error", "The task's image is too large to store.")
        return answer.content, answer.headers.get("content-type", "application/octet-stream")

    async def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.client.get(url, headers={"user-agent": "llm-gateway", **headers})
        except TRANSPORT_ERRORS as exc:
            raise self.failure(exc) from None


# What a button's customId does, by the marker Midjourney puts in it ("MJ::JOB::upsample::1::<hash>",
# "MJ::Outpaint::50::1::<hash>::SOLO", "MJ::JOB::pan_left::1::<hash>::SOLO", ...): first match wins.
_CUSTOM_ID_ACTIONS = (
    ("upsample", "UPSCALE"), ("reroll", "REROLL"), ("pan_", "PAN"), ("Outpaint", "ZOOM"), ("CustomZoom", "ZOOM"),
    ("variation", "VARIATION"), ("Inpaint", "VARIATION"),
)


def action_of(custom_id: str) -> str | None:
    """The task action a button starts (None: not a button the gateway knows how to price)."""
    if not custom_id.startswith("MJ::"):
        return None
    for marker, action in _CUSTOM_ID_ACTIONS:
        if marker in custom_id:
            return action
    return None
