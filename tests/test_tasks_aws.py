"""The Midjourney task service's AWS parts, against moto on 127.0.0.1: stored images in S3 served by
a 302 to a presigned link, webhooks through the SQS FIFO queue and the webhook function, and the
sweep that fails tasks whose upstream went silent (at query time, under `serve`, on the schedule)."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid

import httpx
import pytest

from llm_gateway.awsclients import client
from llm_gateway.tasks import service
from llm_gateway.tasks.files import IMMUTABLE, S3Files
from llm_gateway.tasks.webhooks import QueuedWebhooks, Webhooks, lambda_handler
from tests.conftest import extra_gateway
from tests.fakes.midjourney_upstream import png
from tests.platform_client import data
from tests.test_midjourney import IMAGINE_FAST, Receiver, fake_mj, imagine, mj_env, query, upstream_id, wait_for

__all__ = ["fake_mj"]  # the fake midjourney-proxy fixture, shared with test_midjourney


@pytest.fixture
def bucket(moto_dynamodb) -> str:
    name = "files-" + uuid.uuid4().hex[:10]
    client("s3").create_bucket(Bucket=name)
    return name


def _objects(bucket: str) -> list[str]:
    return [o["Key"] for o in client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- stored images in S3 ---------------------------------------------------------------------------

def test_s3_files_put_get_and_link_under_their_prefix(bucket):
    files = S3Files(bucket, "/files/")
    assert files.get("nothing") is None and files.exists("nothing") is False
    files.put("abc", png())
    files.put("abc.v/16x0-inside-webp-q80", b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert sorted(_objects(bucket)) == ["files/abc", "files/abc.v/16x0-inside-webp-q80"]
    assert files.get("abc") == png() and files.exists("abc") is True
    head = client("s3").head_object(Bucket=bucket, Key="files/abc")
    assert (head["ContentType"], head["CacheControl"]) == ("image/png", IMMUTABLE)
    link = files.link("abc")
    assert link.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in link and "X-Amz-Expires=3600" in link
    fetched = httpx.get(link)
    assert fetched.status_code == 200 and fetched.content == png()


def test_on_s3_the_public_file_route_redirects_to_a_presigned_link(gateway, fake_mj, bucket, tmp_path):
    from PIL import Image

    env = mj_env(gateway, fake_mj, f"s3://{bucket}/files")
    with extra_gateway(gateway, env=env) as gw:
        key = gw.key(gw.user("1"))
        prompt = f"on s3 {time.time()}"
        task_id = data(imagine(gw, key, prompt))
        fake_mj.progress(upstream_id(fake_mj, prompt), "SUCCESS")
        url = query(gw, key, task_id)["imageS3Url"]
        file_id = url.rsplit("/", 1)[1]
        assert _objects(bucket) == [f"files/{file_id}"]  # copied at SUCCESS

        original = httpx.get(url)
        assert original.status_code == 302 and original.headers["cache-control"] == "public, max-age=300"
        assert original.headers["location"].startswith(f"http://127.0.0.1:{moto_port()}/{bucket}/files/{file_id}?")
        stored = httpx.get(url, follow_redirects=True)
        assert stored.content == png() and stored.headers["content-type"] == "image/png"

        small = httpx.get(url, params={"w": 16, "output": "webp", "q": 80}, follow_redirects=True)
        assert small.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(small.content)).size == (16, 12)
        assert sorted(_objects(bucket)) == [f"files/{file_id}", f"files/{file_id}.v/16x0-inside-webp-q80"]
        client("s3").put_object(Bucket=bucket, Key=f"files/{file_id}", Body=b"")  # a variant is made once
        again = httpx.get(url, params={"w": 16, "output": "webp", "q": 80}, follow_redirects=True)
        assert again.content == small.content

        assert httpx.get(url[:-3] + "AAA").status_code == 404
        assert httpx.get(url[:-3] + "AAA", params={"w": 8}).status_code == 404


def moto_port() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1]


# --- webhooks through the queue --------------------------------------------------------------------

def _fifo_queue() -> str:
    return client("sqs").create_queue(QueueName=f"hooks-{uuid.uuid4().hex[:8]}.fifo",
                                      Attributes={"FifoQueue": "true"})["QueueUrl"]


def _received(queue_url: str) -> list[dict]:
    """Everything waiting in the queue, as the SQS event source hands it to the function."""
    sqs = client("sqs")
    records = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       AttributeNames=["MessageGroupId"]).get("Messages", [])
        if not messages:
            return records
        for m in messages:
            records.append({"messageId": m["MessageId"], "body": m["Body"],
                            "attributes": {"MessageGroupId": m["Attributes"]["MessageGroupId"]}})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def test_on_aws_webhooks_go_through_the_queue_in_order_to_the_webhook_function(gateway, fake_mj, moto_dynamodb,
                                                                                tmp_path):
    queue_url = _fifo_queue()
    receiver = Receiver(fail_first=1)
    env = mj_env(gateway, fake_mj, tmp_path, GATEWAY_WEBHOOK_QUEUE_URL=queue_url)
    try:
        with extra_gateway(gateway, env=env) as gw:
            key = gw.key(gw.user("1"))
            prompt = f"queued hooks {time.time()}"
            task_id = data(imagine(gw, key, prompt, webhook=receiver.url))
            up = upstream_id(fake_mj, prompt)
            fake_mj.progress(up, "IN_PROGRESS", "30%")
            fake_mj.progress(up, "SUCCESS")
            assert wait_for(lambda: query(gw, key, task_id)["imageS3Url"])
        time.sleep(0.3)
        assert receiver.delivered == []  # nothing is delivered by the process that made the change
        records = _received(queue_url)
        assert {r["attributes"]["MessageGroupId"] for r in records} == {str(task_id)}
        worker = Webhooks(allow_private=True, backoff=0.01)
        assert lambda_handler({"Records": records}, webhooks=worker) == {"batchItemFailures": []}
        steps = [(d["status"], d["progress"]) for d in receiver.delivered]
        assert steps == [("SUBMITTED", "0%"), ("IN_PROGRESS", "30%"), ("SUCCESS", "100%")]
        assert receiver.delivered[-1]["taskId"] == task_id and receiver.delivered[-1]["imageS3Url"]
        assert all(n == 2 for n in receiver.tries.values())  # each retried after its first refusal
    finally:
        receiver.server.stop()


def test_the_webhook_function_sends_back_a_failed_message_with_its_tasks_later_ones_only(moto_dynamodb):
    queue_url = _fifo_queue()
    receiver = Receiver()
    try:
        queued = QueuedWebhooks(queue_url)
        for task_id, status in ((1, "SUBMITTED"), (2, "SUBMITTED"), (1, "IN_PROGRESS"), (2, "SUCCESS")):
            queued.send(task_id, receiver.url, {"taskId": task_id, "status": status, "progress": "0%"})
        queued.send(1, receiver.url, {"taskId": 1, "status": "SUBMITTED", "progress": "0%"})  # a repeat: once
        records = _received(queue_url)
        assert [json.loads(r["body"])["payload"]["status"] for r in records] == [
            "SUBMITTED", "SUBMITTED", "IN_PROGRESS", "SUCCESS"]
        task_2 = [r for r in records if r["attributes"]["MessageGroupId"] == "2"]
        task_2[0]["body"] = "{not json"
        answer = lambda_handler({"Records": records}, webhooks=Webhooks(allow_private=True, backoff=0.01))
        assert answer == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in task_2]}
        assert [(d["taskId"], d["status"]) for d in receiver.delivered] == [(1, "SUBMITTED"), (1, "IN_PROGRESS")]
        # a private target is refused at delivery too, unless allowed
        assert lambda_handler({"Records": records[:1]}, webhooks=Webhooks(backoff=0.01)) == {"batchItemFailures": []}
        assert len(receiver.delivered) == 2
    finally:
        receiver.server.stop()


def test_a_webhook_the_queue_refuses_is_logged_not_raised(caplog):
    class Down:
        def send_message(self, **_):
            raise RuntimeError("sqs unreachable")

    QueuedWebhooks("https://sqs.invalid/q.fifo", sqs=Down()).send(7, "https://example.com/h", {"taskId": 7})
    assert "webhook not queued" in caplog.text


# --- tasks whose upstream went silent ---------------------------------------------------------------

def test_a_task_silent_past_the_stale_bound_is_failed_at_query_time_and_refunded_once(gateway, fake_mj, tmp_path):
    env = mj_env(gateway, fake_mj, tmp_path, GATEWAY_MJ_POLL_SECONDS="0", GATEWAY_MJ_STALE_SECONDS="3")
    with extra_gateway(gateway, env=env) as gw:
        user = gw.user("1")
        key = gw.key(user)
        prompt = f"silent {time.time()}"
        task_id = data(imagine(gw, key, prompt))
        up = upstream_id(fake_mj, prompt)
        assert query(gw, key, task_id)["status"] == "SUBMITTED"  # fetched: no news, but not stale yet
        assert gw.balance(user) == 1_000_000 - IMAGINE_FAST
        time.sleep(3.1)
        task = query(gw, key, task_id)
        assert (task["status"], task["failReason"]) == ("FAILURE", service.STALE_REASON)
        assert task["finishTime"]
        assert gw.balance(user) == 1_000_000  # refunded
        fake_mj.progress(up, "SUCCESS")  # the upstream wakes up: too late, nothing moves
        assert query(gw, key, task_id)["status"] == "FAILURE"
        assert gw.balance(user) == 1_000_000
        assert [(r.model, r.cost, r.status) for r in gw.store.list_usage(user).records] == [
            ("mj-imagine", -IMAGINE_FAST, "refunded"), ("mj-imagine", IMAGINE_FAST, "ok")]


def test_a_task_with_news_is_not_stale(gateway, fake_mj, tmp_path):
    env = mj_env(gateway, fake_mj, tmp_path, GATEWAY_MJ_STALE_SECONDS="2")
    with extra_gateway(gateway, env=env) as gw:
        key = gw.key(gw.user("1"))
        prompt = f"alive {time.time()}"
        task_id = data(imagine(gw, key, prompt))
        for percent in ("20%", "40%", "60%"):  # 3 s in all, never 2 s without news
            time.sleep(1)
            fake_mj.progress(upstream_id(fake_mj, prompt), "IN_PROGRESS", percent)  # each a step forward
        assert query(gw, key, task_id)["status"] == "IN_PROGRESS"


def _tasks_app(gw, env: dict[str, str]):
    """Another process over `gw`'s store (the tasks function's container, or a second server)."""
    from llm_gateway.config import Settings
    from llm_gateway.http.app import create_app
    from llm_gateway.runtime import Runtime

    settings = Settings(store_url=gw.runtime.settings.store_url, env=env, upstream_timeout=5.0)
    return create_app(families=["tasks"], runtime=Runtime.build(settings, gw.store))


def test_the_schedule_sweeps_stale_tasks_nobody_asks_about(gateway, fake_mj, moto_dynamodb, tmp_path):
    asyncio.run(asyncio.sleep(0))  # as after any earlier asyncio.run: no current event loop
    receiver = Receiver()
    env = mj_env(gateway, fake_mj, tmp_path)
    try:
        with extra_gateway(gateway, db=tmp_path / "swept.db", env=env) as gw:
            user = gw.user("1")
            key = gw.key(user)
            quiet = data(imagine(gw, key, f"quiet {time.time()}", webhook=receiver.url))
            done_prompt = f"done {time.time()}"
            done = data(imagine(gw, key, done_prompt))
            fake_mj.progress(upstream_id(fake_mj, done_prompt), "SUCCESS")
            assert wait_for(lambda: query(gw, key, done)["status"] == "SUCCESS")
            assert wait_for(lambda: len(receiver.delivered) == 1)
            assert gw.balance(user) == 1_000_000 - 2 * IMAGINE_FAST

            calls: list[dict] = []
            queue_url = _fifo_queue()
            function_env = {**env, "GATEWAY_MJ_STALE_SECONDS": "0", "GATEWAY_WEBHOOK_QUEUE_URL": queue_url}
            handler = service.scheduled(_Mangum(_tasks_app(gw, function_env), calls))
            assert handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None) == {"expired": 1}
            assert handler({"source": "aws.events"}, None) == {"expired": 0}  # once
            assert handler({"httpMethod": "GET", "path": "/x"}, None) == {"statusCode": 200}  # the API's go to Mangum
            assert len(calls) == 1

            assert gw.balance(user) == 1_000_000 - IMAGINE_FAST  # the quiet one released, the done one charged
            assert query(gw, key, quiet)["failReason"] == service.STALE_REASON
            assert query(gw, key, done)["status"] == "SUCCESS"
            assert gw.store.open_tasks() == []
            (record,) = _received(queue_url)  # the failure's webhook, to the webhook function
            lambda_handler({"Records": [record]}, webhooks=Webhooks(allow_private=True))
            assert [(d["taskId"], d["status"]) for d in receiver.delivered] == [(quiet, "SUBMITTED"), (quiet, "FAILURE")]
    finally:
        receiver.server.stop()


class _Mangum:
    """What the tasks function's handler wraps: a callable with the app (Mangum's `.app`)."""

    def __init__(self, app, calls: list) -> None:
        self.app = app
        self.calls = calls

    def __call__(self, event, context):
        self.calls.append(event)
        return {"statusCode": 200}


def test_serve_sweeps_stale_tasks_by_itself(gateway, fake_mj, tmp_path, monkeypatch):
    from llm_gateway.config import Settings
    from llm_gateway.http import app as app_module
    from llm_gateway.runtime import Runtime
    from llm_gateway.store import open_store
    from tests.conftest import Gateway, gateway_server

    monkeypatch.setattr(app_module, "TASK_SWEEP_SECONDS", 0.1)
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = mj_env(gateway, fake_mj, tmp_path, GATEWAY_MJ_STALE_SECONDS="0.3")
    runtime = Runtime.build(Settings(store_url=url, env=env, upstream_timeout=5.0), open_store(url))
    server = gateway_server(app_module.create_app(runtime=runtime, housekeeping=0.1))
    try:
        gw = Gateway(runtime, server.url, gateway.fake_openai, gateway.fake_anthropic)
        user = gw.user("1")
        task_id = data(imagine(gw, gw.key(user), f"forgotten {time.time()}"))
        assert wait_for(lambda: gw.store.get_task(user, task_id).status == "FAILURE", seconds=5)
        assert gw.balance(user) == 1_000_000
    finally:
        server.stop()


# --- through API Gateway -----------------------------------------------------------------------------

def test_through_api_gateway_the_callback_and_file_links_carry_the_stage(gateway, fake_mj, tmp_path):
    """API Gateway hands the app paths without the stage; the links the gateway gives out keep it."""
    from mangum import Mangum

    from llm_gateway.http.app import create_app

    with extra_gateway(gateway, env=mj_env(gateway, fake_mj, tmp_path)) as gw:
        key = gw.key(gw.user("1"))
        handler = Mangum(create_app(families=["tasks"], runtime=gw.runtime), lifespan="off")
        path = "/api/v1/ai/draw/mj/imagine"
        body = json.dumps({"model": "midjourney", "prompt": f"staged {time.time()}"})
        headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "content-type": "application/json",
                   "authorization": f"Bearer {key}"}
        answer = handler({
            "resource": path, "path": path, "httpMethod": "POST", "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"domainName": headers["host"], "stage": "prod", "path": f"/prod{path}",
                               "httpMethod": "POST", "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": path},
        }, None)
        assert answer["statusCode"] == 200, answer
        assert fake_mj.last("imagine").body["notifyHook"] == (
            "https://abc123.execute-api.us-east-1.amazonaws.com/prod/api/v1/ai/draw/mj/callback/"
            "callback-secret-abcdef0123456789")
