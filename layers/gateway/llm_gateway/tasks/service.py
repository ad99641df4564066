"""The task lifecycle over the store: submission, queries, callbacks, and what follows a step forward.

Money: a submission is admitted like any call (permission and rate limit of the model `midjourney`,
funds for the action's `per_request` price in the chosen pool, from its `mj-*` model). It is
charged when the upstream accepts the task (API.md 5.2), and the reservation (billing's Ticket as a
dict) is stored with the task: if the task ends in FAILURE, whichever process makes the write that
moves it there refunds the charge, exactly once. A submission the upstream refuses is released at
once. The usage records' request ids (the submitting request's, and that id with `-refund`) make
any repeat harmless.

Every status update is one conditional write in the store (`advance_task`) that applies only if it
moves the task forward; the process whose write applied does what follows it (settlement, the stored
image, the webhook), so each happens once however callbacks and polls race.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request

from .. import logs
from ..admission.gate import require_kind
from ..admission.keys import Caller
from ..billing.reservation import Ticket
from ..billing.settle import refund, settle, write
from ..billing.usage import Usage
from ..catalog import Prices
from ..errors import GatewayError, UpstreamError, invalid
from ..http.context import context
from ..relay.calls import settle_off_loop
from ..runtime import Runtime
from ..store.base import TaskRecord
from . import lifecycle
from .files import Files, new_file_id, open_files
from .webhooks import QueuedWebhooks, Webhooks

MODEL = "midjourney"
CALLBACK_ROUTE = "/api/v1/ai/draw/mj/callback/"
# Upstream submission codes (midjourney-proxy): accepted, already exists, queued; queue full; banned.
ACCEPTED = (1, 21, 22)
QUEUE_FULL = 23
BANNED = 24
# A task with no news from its upstream (no step forward) for this long is failed and its
# charge refunded (`expire`): a lost callback and an upstream that forgot the task would
# otherwise keep the money for ever. Midjourney finishes a job in minutes.
STALE_SECONDS = 3600.0
STALE_REASON = "No news of the task from its upstream for too long; its charge is refunded."


@dataclass
class TaskState:
    """What the task routes keep per app (per process): the file storage and the webhook worker."""

    files: Files
    webhooks: Webhooks | QueuedWebhooks
    poll_seconds: float
    stale_seconds: float
    callback_secret: str | None
    public_url: str | None


def state_of(app: Any) -> TaskState:
    found = getattr(app.state, "tasks", None)
    if found is None:
        settings = app.state.runtime.settings
        allow_private = settings.secret("GATEWAY_WEBHOOK_ALLOW_PRIVATE") == "1"
        queue_url = settings.secret("GATEWAY_WEBHOOK_QUEUE_URL")
        found = TaskState(
            files=open_files(settings),
            # on AWS a queue and its own function deliver them; under `serve`, this process
            webhooks=QueuedWebhooks(queue_url, allow_private=allow_private) if queue_url else
            Webhooks(allow_private=allow_private, backoff=float(settings.secret("GATEWAY_WEBHOOK_BACKOFF") or 2.0)),
            poll_seconds=float(settings.secret("GATEWAY_MJ_POLL_SECONDS") or 3.0),
            stale_seconds=float(settings.secret("GATEWAY_MJ_STALE_SECONDS") or STALE_SECONDS),
            callback_secret=settings.secret("GATEWAY_MJ_CALLBACK_SECRET"),
            public_url=(settings.secret("GATEWAY_PUBLIC_URL") or "").rstrip("/") or None,
        )
        app.state.tasks = found
    return found


def state(request: Request) -> TaskState:
    return state_of(request.app)


def base_url(request: Request) -> str:
    """Where clients reach this gateway: GATEWAY_PUBLIC_URL, else the request's own origin. Through
    API Gateway (Mangum) the app sees paths without the stage (or a custom domain's base path), so
    the origin is the event's domain and whatever precedes the app's path in the one it received."""
    public = state(request).public_url
    if public:
        return public
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext") or {}
        domain, full, path = context.get("domainName"), context.get("path") or "", event.get("path") or ""
        if domain and full.endswith(path):
            return f"https://{domain}{full[:len(full) - len(path)]}".rstrip("/")
    return str(request.base_url).rstrip("/")


def not_found(task_id: Any) -> GatewayError:
    """The one answer for a task that is missing or another user's."""
    return GatewayError("not_found", f"Task {task_id} not found.", param="taskId")


@dataclass(frozen=True)
class Submission:
    kind: str  # imagine, blend, describe, action
    action: str  # the task's action (IMAGINE, UPSCALE, ...)
    pool: str
    upstream_body: dict[str, Any]
    prompt: str = ""
    description: str = ""
    webhook: str = ""
    parent: TaskRecord | None = None


# --- submission ------------------------------------------------------------------------------------

async def submit(request: Request, rt: Runtime, who: Caller, sub: Submission) -> int:
    """Admit, submit upstream, store the task with its reservation; the new task's id."""
    ctx = context(request)
    spec = rt.gate.model_for(who, MODEL)
    require_kind(spec, "task", f"/api/v1/ai/draw/mj/{sub.kind}")
    provider_name = sub.parent.provider if sub.parent is not None else spec.provider
    provider = rt.providers.get(provider_name)
    provider.require_configured()
    priced = rt.catalogs.current().get(lifecycle.ACTION_MODELS[sub.action])
    # The built-in mock costs nothing, whatever the actions' prices (a fresh install shows the flow).
    prices = Prices() if provider_name == "mock" or priced is None else priced.prices
    ctx.model = priced.name if priced is not None else MODEL
    ticket: Ticket = await rt.blocking.finish(
        rt.gate.admit, who, replace(spec, prices=prices), input_tokens=0, max_output_tokens=None,
        expected=Usage(pool=sub.pool), request_id=ctx.request_id, route=f"midjourney-{sub.kind}",
        undo=lambda t: settle(rt.store, t, None, "error"),
    )
    ticket.model = ctx.model  # the rate limit is the `midjourney` model's; the price and the record the action's
    body = dict(sub.upstream_body)
    secret = state(request).callback_secret
    if secret:
        body["notifyHook"] = f"{base_url(request)}{CALLBACK_ROUTE}{secret}"
    try:
        answer = await provider.task_submit(sub.kind, body)
        upstream_id = _accepted(answer)
        task_id = await rt.blocking(rt.store.next_task_id)
        now = time.time()
        task = TaskRecord(
            task_id=task_id, user_id=who.user_id, key_id=who.key.key_id, action=sub.action, pool=sub.pool,
            status="SUBMITTED", progress=0, prompt=sub.prompt, description=sub.description, submit_time=now,
            updated_at=now, webhook_url=sub.webhook, provider=provider_name, upstream_id=upstream_id,
            parent_id=sub.parent.task_id if sub.parent else None, ticket=ticket.as_dict(),
        )
        await rt.blocking.finish(rt.store.create_task, task)
    except BaseException:
        await settle_off_loop(rt, ticket, None, "error")
        raise
    record = await settle_off_loop(rt, ticket, Usage(pool=sub.pool), "ok")  # accepted: charged now
    if record is not None:
        ctx.cost = record.cost
    if sub.webhook:
        state(request).webhooks.send(task_id, sub.webhook, lifecycle.public(task, base_url(request)))
    return task_id


def _accepted(answer: dict[str, Any]) -> str:
    """The upstream task id of an accepted submission; a refusal mapped per API.md 5.2."""
    code = answer.get("code")
    description = str(answer.get("description") or "")
    if code in ACCEPTED and answer.get("result"):
        return str(answer["result"])
    if code == QUEUE_FULL:
        raise UpstreamError("upstream_rate_limited", "The Midjourney queue is full; retry later.",
                            headers={"Retry-After": "10"}, retryable=False)
    if code == BANNED:
        properties = answer.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        word = str(properties.get("bannedWord") or "").strip()
        raise invalid(f"The prompt contains a banned word: '{word}'." if word else
                      "The prompt contains a banned word.", "prompt")
    raise UpstreamError("upstream_error",
                        f"The Midjourney upstream refused the task (code {code}: {description[:200]}).")


# --- updates ---------------------------------------------------------------------------------------

async def advance(request: Request, rt: Runtime, task: TaskRecord, upstream: dict[str, Any]) -> TaskRecord:
    """Apply the upstream's view of `task`; the task as it now is."""
    return await _apply(state(request), base_url(request), rt, task, upstream)


async def _apply(ts: TaskState, base: str, rt: Runtime, task: TaskRecord, upstream: dict[str, Any]) -> TaskRecord:
    """What follows a step forward is done here, by the one process whose write applied."""
    moved = lifecycle.step(task, upstream)
    if moved is None:
        return task
    status, progress, changes = moved
    written = await rt.blocking.finish(rt.store.advance_task, task.user_id, task.task_id, status, progress, changes)
    if written is None:  # another update got there first: ours was late
        return await rt.blocking(rt.store.get_task, task.user_id, task.task_id) or task
    await _after(ts, base, rt, written)
    return written


async def _after(ts: TaskState, base: str, rt: Runtime, task: TaskRecord) -> None:
    if task.status == "FAILURE":  # charged on acceptance: given back, once (this write was the one)
        given_back = refund(Ticket.from_dict(task.ticket), Usage(pool=task.pool))
        await rt.blocking.finish(write, rt.store, given_back, rt.parking)
    if task.status == "SUCCESS" and task.image_dc_url and not task.file_id:
        task.file_id = await store_image(ts, rt, task)
    if task.webhook_url:
        ts.webhooks.send(task.task_id, task.webhook_url, lifecycle.public(task, base))


async def store_image(ts: TaskState, rt: Runtime, task: TaskRecord) -> str:
    """Copy the task's upstream image into the gateway's storage; its file id ("" if that failed:
    the task keeps its upstream image, and a later query tries again)."""
    try:
        data, _ = await rt.providers.get(task.provider).task_image(task.image_dc_url)
        file_id = new_file_id()
        await rt.blocking(ts.files.put, file_id, data)
        await rt.blocking(rt.store.set_task_file, task.user_id, task.task_id, file_id)
        return file_id
    except Exception:  # noqa: BLE001 - the task has succeeded; its copy is a convenience
        logs.log("task image not stored", level=logging.WARNING, exc_info=True, task_id=task.task_id)
        return ""


async def refresh(request: Request, rt: Runtime, task: TaskRecord) -> TaskRecord:
    """A task as its upstream sees it now, if it is not final and has not been updated lately; one
    silent for longer than the stale bound is failed (`expire`)."""
    ts = state(request)
    if task.final:
        if task.status == "SUCCESS" and task.image_dc_url and not task.file_id:
            task.file_id = await store_image(ts, rt, task)
        return task
    if time.time() - task.updated_at < ts.poll_seconds:
        return task
    try:
        upstream = await rt.providers.get(task.provider).task_fetch(task.upstream_id)
    except GatewayError as err:  # the stored task is still an answer
        logs.log("task refresh failed", level=logging.WARNING, task_id=task.task_id, error=err.kind)
        upstream = None
    if upstream:
        task = await advance(request, rt, task, upstream)
    return await expire(ts, base_url(request), rt, task)


async def expire(ts: TaskState, base: str, rt: Runtime, task: TaskRecord) -> TaskRecord:
    """Fail `task` if it is not final and has had no step forward for `stale_seconds`: through the
    same conditional write as any update, so its charge is refunded exactly once, and a
    callback that lands first wins."""
    if task.final or time.time() - task.updated_at < ts.stale_seconds:
        return task
    logs.log("stale task failed", level=logging.WARNING, task_id=task.task_id, status=task.status)
    return await _apply(ts, base, rt, task, {"status": "FAILURE", "failReason": STALE_REASON})


async def sweep(app: Any, limit: int = 100) -> int:
    """Fail the stale tasks among the oldest open ones, whoever owns them and whether or not anyone
    asks about them again; how many were failed. Run by `serve` every minute and on AWS by the
    tasks function's schedule."""
    rt: Runtime = app.state.runtime
    ts = state_of(app)
    expired = 0
    for task in await rt.blocking(rt.store.open_tasks, limit):
        after = await expire(ts, ts.public_url or "", rt, task)
        expired += after.final and after.fail_reason == STALE_REASON
    return expired


async def sweep_forever(app: Any, every: float) -> None:
    """`sweep` every `every` seconds; a failing round is logged, not fatal."""
    while True:
        await asyncio.sleep(every)
        try:
            await sweep(app)
        except Exception:  # noqa: BLE001 - the next round tries again
            logs.log("task sweep failed", level=logging.WARNING, exc_info=True)


def scheduled(http: Any) -> Any:
    """The tasks function's Lambda handler: API Gateway events go to `http` (Mangum), the schedule's
    (EventBridge) sweep the stale tasks on the same app and event loop."""

    def handler(event: dict[str, Any], context: Any = None) -> Any:
        if event.get("source") == "aws.events":
            try:
                loop = asyncio.get_event_loop()  # Mangum's, which it sets when it is made
            except RuntimeError:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
            return {"expired": loop.run_until_complete(sweep(http.app))}
        return http(event, context)

    return handler


def check_callback(request: Request, secret: str) -> None:
    """403 unless `secret` is GATEWAY_MJ_CALLBACK_SECRET (none set: every callback is refused)."""
    expected = state(request).callback_secret
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise GatewayError("permission", "Forbidden.")


async def callback(request: Request, rt: Runtime, body: dict[str, Any]) -> None:
    """An upstream's notifyHook call (its secret checked first, by `check_callback`)."""
    upstream_id = str(body.get("id") or "")
    task = await rt.blocking(rt.store.find_task, "midjourney", upstream_id) if upstream_id else None
    if task is None:
        raise GatewayError("not_found", "Unknown task.", param="id")
    await advance(request, rt, task, body)
