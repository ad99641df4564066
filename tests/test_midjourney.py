"""The Midjourney task service (API.md 5.2) end to end: the gateway in front of a fake midjourney-proxy
on 127.0.0.1 that calls back like the real one, and the built-in mock."""

from __future__ import annotations

import base64
import io
import threading
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import extra_gateway
from tests.fakes.midjourney_upstream import MJ_OPERATOR_SECRET, FakeMidjourney, png
from tests.fakes.server import ServerThread
from tests.platform_client import data, get, post, refusal

MJ = "/api/v1/ai/draw/mj"
CALLBACK_SECRET = "callback-secret-abcdef0123456789"
IMAGINE_FAST = 50_000  # micros: mj-imagine's FAST price
UPSCALE_FAST = 20_000
IMAGE = "data:image/png;base64," + base64.b64encode(png()).decode()


@pytest.fixture(scope="module")
def fake_mj():
    fake = FakeMidjourney()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


def mj_env(template, fake_mj, files, **extra: str) -> dict[str, str]:
    return {**template.runtime.settings.env, "MIDJOURNEY_BASE_URL": fake_mj.url,
            "MIDJOURNEY_API_SECRET": MJ_OPERATOR_SECRET, "GATEWAY_MJ_CALLBACK_SECRET": CALLBACK_SECRET,
            "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "1", "GATEWAY_WEBHOOK_BACKOFF": "0.05",
            "GATEWAY_MJ_POLL_SECONDS": "3600", "GATEWAY_FILES_URL": str(files), **extra}


@pytest.fixture(scope="module")
def gw(gateway, fake_mj, tmp_path_factory):
    with extra_gateway(gateway, env=mj_env(gateway, fake_mj, tmp_path_factory.mktemp("files"))) as served:
        yield served


def imagine(gw, key: str, prompt: str = "a cat in a hat", encoding: str = "json", **fields: Any) -> httpx.Response:
    return post(gw.url, f"{MJ}/imagine", key, {"model": "midjourney", "prompt": prompt, **fields}, encoding)


def query(gw, key: str, task_id: int) -> dict[str, Any]:
    return data(post(gw.url, f"{MJ}/query", key, {"taskId": task_id}))


def upstream_id(fake_mj: FakeMidjourney, prompt: str) -> str:
    return next(t["id"] for t in fake_mj.tasks.values() if t["prompt"] == prompt)


def wait_for(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# --- the whole path ------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
def test_imagine_progress_success_stored_image_then_upscale(gw, fake_mj, encoding):
    user = gw.user("1")
    key = gw.key(user)
    prompt = f"a red fox {encoding} {time.time()}"
    task_id = data(imagine(gw, key, prompt, encoding))
    assert isinstance(task_id, int)
    sent = fake_mj.last("imagine")
    assert sent.body["prompt"] == prompt and sent.headers["mj-api-secret"] == MJ_OPERATOR_SECRET
    assert sent.body["notifyHook"] == f"{gw.url}{MJ}/callback/{CALLBACK_SECRET}"
    assert key not in str(sent.headers) and key not in str(sent.body)
    assert gw.balance(user) == 1_000_000 - IMAGINE_FAST  # charged when the upstream accepted it
    assert [(r.model, r.cost, r.status) for r in gw.store.list_usage(user).records] == [("mj-imagine", IMAGINE_FAST, "ok")]
    task = query(gw, key, task_id)
    assert (task["status"], task["progress"], task["action"], task["taskType"]) == ("SUBMITTED", "0%", "IMAGINE", "FAST")

    up = upstream_id(fake_mj, prompt)
    assert fake_mj.progress(up, "IN_PROGRESS", "42%").get("status") == "IN_PROGRESS"
    assert query(gw, key, task_id)["progress"] == "42%"
    assert fake_mj.progress(up, "SUCCESS")["status"] == "SUCCESS"
    task = query(gw, key, task_id)
    assert (task["status"], task["progress"]) == ("SUCCESS", "100%")
    assert task["imageDcUrl"] == f"{fake_mj.url}/images/{up}.png"
    assert task["imageS3Url"].startswith(f"{gw.url}/api/v1/f/pub/")
    assert task["finishTime"] and task["startTime"] and task["submitTime"]
    stored = httpx.get(task["imageS3Url"])  # public: no key
    assert stored.status_code == 200 and stored.content == png() and stored.headers["content-type"] == "image/png"
    assert "max-age" in stored.headers["cache-control"]
    assert gw.balance(user) == 1_000_000 - IMAGINE_FAST  # charged once, on acceptance
    usage = gw.store.list_usage(user).records
    assert [(r.model, r.cost, r.units.get("pool")) for r in usage] == [("mj-imagine", IMAGINE_FAST, "FAST")]

    u1 = next(a for a in task["actions"] if a["label"] == "U1")
    child = data(post(gw.url, f"{MJ}/action", key, {"taskId": task_id, "customId": u1["customId"]}, encoding))
    assert child != task_id
    sent = fake_mj.last("action")
    assert (sent.body["taskId"], sent.body["customId"]) == (up, u1["customId"])
    child_task = query(gw, key, child)
    assert (child_task["action"], child_task["status"], child_task["prompt"]) == ("UPSCALE", "SUBMITTED", prompt)
    assert gw.balance(user) == 1_000_000 - IMAGINE_FAST - UPSCALE_FAST


def test_describe_carries_its_text_in_prompt(gw, fake_mj):
    user = gw.user("1")
    key = gw.key(user)
    task_id = data(post(gw.url, f"{MJ}/describe", key, {"base64": IMAGE}))
    up = fake_mj.last("describe")
    assert up.body["base64"] == IMAGE
    fake_mj.progress(next(t for t in fake_mj.tasks if fake_mj.tasks[t]["action"] == "DESCRIBE"
                          and fake_mj.tasks[t]["status"] == "NOT_START"), "SUCCESS")
    task = query(gw, key, task_id)
    assert task["status"] == "SUCCESS" and task["action"] == "DESCRIBE" and "a cat in a hat" in task["prompt"]
    assert gw.balance(user) == 1_000_000 - 10_000


def test_blend_sends_its_images_and_dimensions(gw, fake_mj):
    key = gw.key(gw.user("1"))
    task_id = data(post(gw.url, f"{MJ}/blend", key, {"base64Array": [IMAGE, IMAGE, IMAGE], "dimensions": "PORTRAIT",
                                                      "type": "NORMAL"}))
    sent = fake_mj.last("blend")
    assert sent.body["base64Array"] == [IMAGE] * 3 and sent.body["dimensions"] == "PORTRAIT"
    assert query(gw, key, task_id)["taskType"] == "NORMAL"


# --- money ---------------------------------------------------------------------------------------

def test_a_failed_task_is_refunded_to_the_micro_exactly_once(gw, fake_mj):
    user = gw.user("0.123457")
    key = gw.key(user)
    prompt = f"fails {time.time()}"
    task_id = data(imagine(gw, key, prompt))
    assert gw.balance(user) == 123_457 - IMAGINE_FAST
    up = upstream_id(fake_mj, prompt)
    fake_mj.progress(up, "IN_PROGRESS", "10%")
    fake_mj.progress(up, "FAILURE", fail_reason="[Banned] nope")
    fake_mj.notify(up, fake_mj.tasks[up])  # the upstream repeats itself
    task = query(gw, key, task_id)
    assert (task["status"], task["failReason"], task["progress"]) == ("FAILURE", "[Banned] nope", "10%")
    assert gw.balance(user) == 123_457
    records = gw.store.list_usage(user).records  # newest first: the refund, then the charge
    assert [(r.model, r.cost, r.status) for r in records] == [
        ("mj-imagine", -IMAGINE_FAST, "refunded"), ("mj-imagine", IMAGINE_FAST, "ok")]
    assert records[0].request_id == records[1].request_id + "-refund"
    key_row = gw.store.list_keys(user)[0]
    assert (key_row.used_fee, key_row.held) == (0, 0)


@pytest.mark.parametrize("prompt, status, error_type", [
    ("queue-full please", 429, "rate_limit_error"),
    ("a forbidden-word here", 400, "invalid_request_error"),
    ("broken upstream", 502, "upstream_error"),
])
def test_a_refused_submission_is_mapped_and_charges_nothing(gw, prompt, status, error_type):
    user = gw.user("1")
    key = gw.key(user)
    message = refusal(imagine(gw, key, prompt), status, error_type)
    if status == 400:
        assert "forbidden-word" in message
    assert gw.balance(user) == 1_000_000
    assert MJ_OPERATOR_SECRET not in message


def test_too_little_balance_is_a_402_before_the_upstream(gw, fake_mj):
    key = gw.key(gw.user("0.01"))
    before = len(fake_mj.submitted)
    refusal(imagine(gw, key), 402, "insufficient_balance_error")
    assert len(fake_mj.submitted) == before


# --- bad input, permission, isolation ----------------------------------------------------------------

@pytest.mark.parametrize("path, fields, param", [
    ("blend", {"base64Array": [IMAGE]}, "base64Array"),
    ("blend", {"base64Array": [IMAGE] * 6}, "base64Array"),
    ("blend", {"base64Array": [IMAGE, "https://example.com/a.png"]}, "base64Array"),
    ("describe", {"base64": "data:image/png;base64,@@@"}, "base64"),
    ("imagine", {"prompt": ""}, "prompt"),
    ("imagine", {"prompt": "x", "type": "TURBO"}, "type"),
    ("imagine", {"prompt": "x", "webhook": "ftp://example.com/hook"}, "webhook"),
    ("query-mj-tasks?pageSize=4", {}, "pageSize"),
    ("query-mj-tasks?pageSize=21", {}, "pageSize"),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(gw, fake_mj, path, fields, param):
    user = gw.user("1")
    key = gw.key(user)
    before = len(fake_mj.submitted)
    message = refusal(post(gw.url, f"{MJ}/{path}", key, fields), 400, "invalid_request_error")
    assert param in message
    assert len(fake_mj.submitted) == before and gw.balance(user) == 1_000_000
    assert gw.store.list_tasks(user) == (0, [])


def test_a_private_webhook_is_refused_unless_allowed(gateway, fake_mj, tmp_path):
    env = mj_env(gateway, fake_mj, tmp_path, GATEWAY_WEBHOOK_ALLOW_PRIVATE="0")
    with extra_gateway(gateway, env=env) as strict:
        key = strict.key(strict.user("1"))
        for hook in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/", "http://localhost/"):
            assert "webhook" in refusal(imagine(strict, key, webhook=hook), 400, "invalid_request_error")


def test_an_unknown_custom_id_is_a_400(gw, fake_mj):
    key = gw.key(gw.user("1"))
    prompt = f"custom {time.time()}"
    task_id = data(imagine(gw, key, prompt))
    fake_mj.progress(upstream_id(fake_mj, prompt), "SUCCESS")
    query(gw, key, task_id)
    message = refusal(post(gw.url, f"{MJ}/action", key, {"taskId": task_id, "customId": "MJ::JOB::upsample::9::zz"}),
                      400, "invalid_request_error")
    assert "customId" in message


def test_the_permission_is_midjourney(gw):
    key = gw.key(gw.user("1"), permissions=["gpt-4o"])
    refusal(imagine(gw, key), 403, "permission_error")
    refusal(post(gw.url, f"{MJ}/query", key, {"taskId": 1}), 403, "permission_error")


def test_another_users_task_is_the_same_404_as_a_missing_one(gw, fake_mj):
    owner = gw.key(gw.user("1"))
    stranger = gw.key(gw.user("1"))
    prompt = f"mine {time.time()}"
    task_id = data(imagine(gw, owner, prompt))
    fake_mj.progress(upstream_id(fake_mj, prompt), "SUCCESS")
    customs = query(gw, owner, task_id)["actions"]
    theirs = refusal(post(gw.url, f"{MJ}/query", stranger, {"taskId": task_id}), 404, "not_found_error")
    missing = refusal(post(gw.url, f"{MJ}/query", stranger, {"taskId": 10**12}), 404, "not_found_error")
    assert theirs.replace(str(task_id), "N") == missing.replace(str(10**12), "N")
    refusal(post(gw.url, f"{MJ}/action", stranger, {"taskId": task_id, "customId": customs[0]["customId"]}),
            404, "not_found_error")
    assert data(get(gw.url, f"{MJ}/query-mj-tasks", stranger)) == {"total": 0, "tasks": []}


def test_listing_is_newest_first_across_pages_with_the_total(gw):
    key = gw.key(gw.user("1"))
    made = [data(imagine(gw, key, f"list {i} {time.time()}")) for i in range(7)]
    first = data(get(gw.url, f"{MJ}/query-mj-tasks", key, {"page": 1, "pageSize": 5}))
    second = data(get(gw.url, f"{MJ}/query-mj-tasks", key, {"page": 2, "pageSize": 5}))
    assert first["total"] == second["total"] == 7
    assert [t["taskId"] for t in first["tasks"] + second["tasks"]] == made[::-1]


# --- updates -------------------------------------------------------------------------------------

def test_a_forged_callback_is_a_403_and_changes_nothing(gw, fake_mj):
    key = gw.key(gw.user("1"))
    prompt = f"forged {time.time()}"
    task_id = data(imagine(gw, key, prompt))
    up = upstream_id(fake_mj, prompt)
    forged = {**fake_mj.tasks[up], "status": "SUCCESS", "progress": "100%", "imageUrl": "http://evil.example/x.png"}
    r = httpx.post(f"{gw.url}{MJ}/callback/wrong-secret", json=forged)
    refusal(r, 403, "permission_error")
    assert query(gw, key, task_id)["status"] == "SUBMITTED"


def test_a_stale_task_is_fetched_from_the_upstream_at_query_time(gateway, fake_mj, tmp_path):
    with extra_gateway(gateway, env=mj_env(gateway, fake_mj, tmp_path, GATEWAY_MJ_POLL_SECONDS="0")) as polled:
        key = polled.key(polled.user("1"))
        prompt = f"polled {time.time()}"
        task_id = data(imagine(polled, key, prompt))
        up = upstream_id(fake_mj, prompt)
        fake_mj.progress(up, "IN_PROGRESS", "70%", notify=False)
        assert query(polled, key, task_id)["progress"] == "70%"
        fake_mj.progress(up, "SUCCESS", notify=False)
        task = query(polled, key, task_id)
        assert task["status"] == "SUCCESS" and task["imageS3Url"]
        assert up in fake_mj.fetched


def test_racing_callbacks_and_polls_never_move_a_task_back(gateway, fake_mj, tmp_path):
    with extra_gateway(gateway, env=mj_env(gateway, fake_mj, tmp_path, GATEWAY_MJ_POLL_SECONDS="0")) as racing:
        user = racing.user("1")
        key = racing.key(user)
        prompt = f"race {time.time()}"
        task_id = data(imagine(racing, key, prompt))
        up = upstream_id(fake_mj, prompt)
        views = [fake_mj.progress(up, status, progress, notify=False)
                 for status, progress in [("IN_PROGRESS", "10%"), ("IN_PROGRESS", "50%"), ("IN_PROGRESS", "90%"),
                                          ("SUCCESS", "100%")]]
        seen: list[str] = []
        errors: list[BaseException] = []

        def hammer(i: int) -> None:
            try:
                for view in (views[::-1] if i % 2 else views):
                    fake_mj.notify(up, view)
                    seen.append(query(racing, key, task_id)["status"])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        task = query(racing, key, task_id)
        assert (task["status"], task["progress"]) == ("SUCCESS", "100%")
        assert racing.balance(user) == 1_000_000 - IMAGINE_FAST
        assert len(racing.store.list_usage(user).records) == 1


# --- webhooks --------------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on 127.0.0.1 that refuses the first `fail_first` tries of each delivery."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.tries: dict[tuple[str, str], int] = {}
        self.delivered: list[dict[str, Any]] = []
        self.server = ServerThread(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])).start()
        self.url = self.server.url + "/hook"

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.json()
        step = (body["status"], body["progress"])
        self.tries[step] = self.tries.get(step, 0) + 1
        if self.tries[step] <= self.fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        self.delivered.append(body)
        return JSONResponse({"ok": True})


def test_webhooks_arrive_in_order_with_retries(gw, fake_mj):
    receiver = Receiver(fail_first=2)
    try:
        key = gw.key(gw.user("1"))
        prompt = f"hooked {time.time()}"
        task_id = data(imagine(gw, key, prompt, webhook=receiver.url))
        up = upstream_id(fake_mj, prompt)
        fake_mj.progress(up, "IN_PROGRESS", "30%")
        fake_mj.progress(up, "IN_PROGRESS", "60%")
        fake_mj.progress(up, "SUCCESS")
        assert wait_for(lambda: len(receiver.delivered) >= 4)
        steps = [(d["status"], d["progress"]) for d in receiver.delivered]
        assert steps == [("SUBMITTED", "0%"), ("IN_PROGRESS", "30%"), ("IN_PROGRESS", "60%"), ("SUCCESS", "100%")]
        assert all(d["taskId"] == task_id and d["webhookUrl"] == receiver.url for d in receiver.delivered)
        assert receiver.delivered[-1]["imageS3Url"]
        assert all(n == 3 for n in receiver.tries.values())
    finally:
        receiver.server.stop()


# --- stored files ----------------------------------------------------------------------------------

def test_a_stored_image_is_resized_and_converted_once_and_kept(gw, fake_mj):
    from PIL import Image

    key = gw.key(gw.user("1"))
    prompt = f"resized {time.time()}"
    task_id = data(imagine(gw, key, prompt))
    fake_mj.progress(upstream_id(fake_mj, prompt), "SUCCESS")
    url = query(gw, key, task_id)["imageS3Url"]
    small = httpx.get(url, params={"w": 16, "output": "webp", "q": 80})
    assert small.status_code == 200 and small.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(small.content)).size == (16, 12)
    cover = httpx.get(url, params={"w": 10, "h": 10, "fit": "cover", "output": "jpg"})
    assert Image.open(io.BytesIO(cover.content)).size == (10, 10) and cover.headers["content-type"] == "image/jpeg"
    assert httpx.get(url, params={"w": 16, "output": "webp", "q": 80}).content == small.content
    refusal(httpx.get(url, params={"output": "tiff"}), 400, "invalid_request_error")
    refusal(httpx.get(url[:-3] + "AAA"), 404, "not_found_error")


# --- the built-in mock -----------------------------------------------------------------------------

def test_the_mock_runs_every_action_to_success_with_a_real_png(gateway, tmp_path):
    env = {**gateway.runtime.settings.env, "GATEWAY_MJ_MOCK_SECONDS": "0.5", "GATEWAY_MJ_POLL_SECONDS": "0",
           "GATEWAY_FILES_URL": str(tmp_path / "files")}
    with extra_gateway(gateway, db=tmp_path / "mock.db", env=env) as mocked:
        mocked.store.set_model_override("midjourney", {"provider": "mock"})
        mocked.runtime.catalogs.refresh()
        user = mocked.user("0")
        key = mocked.key(user)
        task_id = data(imagine(mocked, key, "a lighthouse"))
        seen = []

        def done(tid: int) -> dict[str, Any] | None:
            task = query(mocked, key, tid)
            seen.append(task["status"])
            return task if task["status"] == "SUCCESS" else None

        task = wait_for(lambda: done(task_id))
        assert task and task["imageS3Url"] and {"SUBMITTED", "IN_PROGRESS"} & set(seen)
        image = httpx.get(task["imageS3Url"])
        assert image.content.startswith(b"\x89PNG") and image.headers["content-type"] == "image/png"
        u1 = next(a for a in task["actions"] if a["label"] == "U1")
        child = data(post(mocked.url, f"{MJ}/action", key, {"taskId": task_id, "customId": u1["customId"]}))
        upscaled = wait_for(lambda: done(child))
        assert upscaled and upscaled["action"] == "UPSCALE"
        describing = data(post(mocked.url, f"{MJ}/describe", key, {"base64": IMAGE}))
        described = wait_for(lambda: done(describing))
        assert described and described["prompt"]
        assert mocked.balance(user) == 0
