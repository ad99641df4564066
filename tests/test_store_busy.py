"""A store that stays throttled or locked: 503 with Retry-After before the upstream is called, and a
settlement that cannot be written is parked and applied later, exactly once (billing.retry).

DynamoDB throttling comes from tests/fakes/throttling.py: the service's own cancellation response,
parsed and retried by botocore; SQLite's lock is held by another connection, as another process would.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest

from llm_gateway import accounts
from llm_gateway.billing import retry
from llm_gateway.http.app import create_app
from llm_gateway.money import to_micros
from llm_gateway.runtime import Runtime
from llm_gateway.store import sqlite as sqlite_store
from llm_gateway.store.base import StoreBusy, UsageRecord
from tests.conftest import Gateway, gateway_server, gateway_settings
from tests.dynamo import table_prefix
from tests.fakes.throttling import ItemThrottle

BODY = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 20}


@contextmanager
def serving(store, fake_openai, fake_anthropic=None):
    settings = gateway_settings(
        "sqlite:///unused" if not hasattr(store, "tables") else f"dynamodb://{store.prefix}",
        fake_openai.url, fake_anthropic.url if fake_anthropic else None, upstream_timeout=5.0)
    runtime = Runtime.build(settings, store)
    server = gateway_server(create_app(runtime=runtime))
    try:
        yield Gateway(runtime, server.url, fake_openai, fake_anthropic)
    finally:
        server.stop()


def _sqlite(tmp_path):
    store = sqlite_store.SQLiteStore(f"sqlite:///{tmp_path}/gw.db")
    store.init()
    return store


def _dynamodb():
    from llm_gateway.store.dynamodb import DynamoDBStore

    store = DynamoDBStore(table_prefix())
    store.init()
    return store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "dynamodb":
        request.getfixturevalue("moto_dynamodb")
        return _dynamodb()
    return _sqlite(tmp_path)


def _held(store, key_id: str) -> int:
    return store.get_key(key_id).held


# --- 503 before anything happens ----------------------------------------------------------------

@pytest.mark.parametrize("route,family", [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_sqlite_locked_past_its_wait_is_503_with_retry_after_and_changes_nothing(
        tmp_path, monkeypatch, fake_openai, route, family):
    monkeypatch.setattr(sqlite_store, "LOCK_WAIT_S", 0.3)
    store = _sqlite(tmp_path)
    with serving(store, fake_openai) as gw:
        model = gw.model(input=1, output=2)
        user = gw.user("5")
        key = gw.key(user)
        before = gw.balance(user)
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process writing for longer than the wait
        try:
            r = httpx.post(gw.url + route, json={**BODY, "model": model},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        if family == "openai":
            assert r.json()["error"]["type"] == "server_error"
            assert r.json()["error"]["code"] == "service_unavailable"
        else:
            assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": r.json()["error"]["message"]}}
        assert gw.balance(user) == before
        assert fake_openai.requests_for(model) == []  # the upstream was never called
        # the lock gone, the same request goes through
        ok = httpx.post(gw.url + "/v1/chat/completions", json={**BODY, "model": model},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert ok.status_code == 200


def test_dynamodb_throttled_through_every_retry_is_503_and_changes_nothing(moto_dynamodb, fake_openai):
    store = _dynamodb()
    with serving(store, fake_openai) as gw:
        model = gw.model(input=1, output=2)
        user = gw.user("5")
        key_row, key = accounts.issue_key(store, user)
        throttle = ItemThrottle(store._client, always=True)
        r = httpx.post(gw.url + "/v1/chat/completions", json={**BODY, "model": model},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert throttle.throttled >= 10  # the store's own bounded retries, each answered "throttled"
        assert gw.balance(user) == to_micros("5")
        assert fake_openai.requests_for(model) == []
        assert _held(store, key_row.key_id) == 0


# --- a settlement that cannot be written --------------------------------------------------------

def _failing_settle(store, monkeypatch):
    calls = []

    def settle(record):
        calls.append(record.request_id)
        raise StoreBusy("throttled")

    monkeypatch.setattr(store, "settle", settle)
    return calls


def test_a_settlement_the_store_refuses_is_parked_then_applied_exactly_once(store, fake_openai, monkeypatch):
    with serving(store, fake_openai) as gw:
        model = gw.model(input=1, output=2)
        user = gw.user("5")
        key = gw.key(user)
        real_settle = store.settle
        tries = _failing_settle(store, monkeypatch)
        r = httpx.post(gw.url + "/v1/chat/completions", json={**BODY, "model": model},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200  # the client has its answer
        assert len(tries) >= 3  # the bounded retries (and a first try on the loop, under serve)
        (parked,) = store.parked_settlements()
        assert parked.request_id == r.headers["x-request-id"]
        assert parked.cost > 0 and parked.reserved >= parked.cost
        held_back = gw.balance(user)
        assert held_back == to_micros("5") - parked.reserved  # the reservation is still held
        monkeypatch.setattr(store, "settle", real_settle)

        assert retry.drain(store) == 1
        assert gw.balance(user) == to_micros("5") - parked.cost
        assert store.parked_settlements() == []
        page = store.list_usage(user)
        assert [rec.request_id for rec in page.records] == [parked.request_id]
        # a second delivery of the same settlement (a lost reply, a redelivered message) changes nothing
        store.park_settlement(parked)
        assert retry.drain(store) == 1
        assert gw.balance(user) == to_micros("5") - parked.cost
        assert store.list_usage(user).total == 1


def test_the_server_drains_parked_settlements_by_itself(tmp_path, fake_openai):
    store = _sqlite(tmp_path)
    user = "u-" + uuid.uuid4().hex[:8]
    accounts.create_user(store, user, balance=to_micros("1"))
    key, _ = accounts.issue_key(store, user)
    admission = store.admit(user_id=user, key_id=key.key_id, counters=[], reserve=300, now=0.0)
    assert admission.ok
    record = UsageRecord(request_id="req_" + uuid.uuid4().hex, user_id=user, key_id=key.key_id,
                         model="m", created_at=1.0, cost=120, reserved=300)
    store.park_settlement(record)
    settings = gateway_settings(f"sqlite:///{tmp_path}/gw.db", fake_openai.url)
    app = create_app(runtime=Runtime.build(settings, store), housekeeping=0.05)

    async def run():
        async with app.router.lifespan_context(app):
            for _ in range(100):
                if not store.parked_settlements():
                    break
                await asyncio.sleep(0.05)

    asyncio.run(run())
    assert store.parked_settlements() == []
    assert store.get_user(user).balance == to_micros("1") - 120
    assert store.get_key(key.key_id).held == 0


def test_nothing_durable_takes_it_then_memory_and_the_alarmed_line(store, monkeypatch, caplog):
    record = UsageRecord(request_id="req_" + uuid.uuid4().hex, user_id="nobody", key_id="key_x",
                         model="m", created_at=1.0)

    def refuse(*_):
        raise StoreBusy("down")

    monkeypatch.setattr(store, "park_settlement", refuse)
    real_settle = store.settle
    monkeypatch.setattr(store, "settle", refuse)
    with caplog.at_level("ERROR", logger="llm_gateway"):
        retry.Parking(store).put(record)
    assert any(r.getMessage() == "settlement failed" for r in caplog.records)
    monkeypatch.setattr(store, "settle", real_settle)
    assert retry.drain(store) == 1  # the next drain of this process applies it
    assert retry.drain(store) == 0


# --- on AWS: the queue and the settlement function ----------------------------------------------

def test_the_queue_carries_a_settlement_to_the_settlement_function_once(moto_dynamodb):
    from llm_gateway.awsclients import client

    store = _dynamodb()
    user = "u-" + uuid.uuid4().hex[:8]
    accounts.create_user(store, user, balance=to_micros("1"))
    key, _ = accounts.issue_key(store, user)
    assert store.admit(user_id=user, key_id=key.key_id, counters=[], reserve=500, now=0.0).ok
    sqs = client("sqs", config=None)
    url = sqs.create_queue(QueueName="settle-" + uuid.uuid4().hex[:8])["QueueUrl"]
    record = UsageRecord(request_id="req_" + uuid.uuid4().hex, user_id=user, key_id=key.key_id,
                         model="m", created_at=1.0, cost=200, reserved=500)
    retry.Parking(store, url, sqs).put(record)
    assert store.parked_settlements() == []  # it went to the queue, not the store
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event = {"Records": [{"messageId": message["MessageId"], "body": message["Body"]}]}
    assert retry.lambda_handler(event, store=store) == {"batchItemFailures": []}
    assert store.get_user(user).balance == to_micros("1") - 200
    assert store.get_key(key.key_id).held == 0
    # delivered again (SQS is at-least-once): nothing changes
    assert retry.lambda_handler(event, store=store) == {"batchItemFailures": []}
    assert store.get_user(user).balance == to_micros("1") - 200
    assert store.list_usage(user).total == 1


def test_the_settlement_function_reports_only_the_messages_that_failed(moto_dynamodb, monkeypatch):
    store = _dynamodb()
    good = UsageRecord(request_id="req_" + uuid.uuid4().hex, user_id="u", key_id="k", model="m", created_at=1.0)
    bad = UsageRecord(request_id="req_" + uuid.uuid4().hex, user_id="u", key_id="k", model="m", created_at=1.0)
    real_settle = store.settle

    def settle(record):
        if record.request_id == bad.request_id:
            raise StoreBusy("throttled")
        return real_settle(record)

    monkeypatch.setattr(store, "settle", settle)
    event = {"Records": [{"messageId": "m1", "body": json.dumps(good.as_dict())},
                         {"messageId": "m2", "body": json.dumps(bad.as_dict())}]}
    assert retry.lambda_handler(event, store=store) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    # the schedule drains what was parked in the store
    monkeypatch.setattr(store, "settle", real_settle)
    store.park_settlement(bad)
    assert retry.lambda_handler({"source": "aws.events"}, store=store) == {"settled": 1}


# --- a hot user: every charge accounted for, no 5xx but 503 ------------------------------------

def test_a_hot_user_under_throttling_loses_and_doubles_no_charge(moto_dynamodb, fake_openai):
    store = _dynamodb()
    with serving(store, fake_openai) as gw:
        model = gw.model(input=1, output=2)
        user = gw.user("100")
        key = gw.key(user)
        throttle = ItemThrottle(store._client, rate=15, burst=3)  # a hot item's budget, scaled down

        async def burst():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*[
                    client.post(gw.url + "/v1/chat/completions", json={**BODY, "model": model},
                                headers={"Authorization": f"Bearer {key}"}) for _ in range(24)])

        replies = asyncio.run(burst())
        statuses = [r.status_code for r in replies]
        assert set(statuses) <= {200, 503}, statuses
        assert throttle.throttled > 0  # the burst did hit the item's rate
        retry.drain(store)
        page = store.list_usage(user, limit=100)
        ok = [r for r in replies if r.status_code == 200]
        assert page.total == len(ok)  # one record per answer: none lost, none doubled
        assert {rec.request_id for rec in page.records} == {r.headers["x-request-id"] for r in ok}
        charged = sum(rec.cost for rec in page.records)
        assert gw.balance(user) == to_micros("100") - charged
        (key_row,) = [k for k in store.list_keys(user)]
        assert key_row.held == 0 and key_row.used_fee == charged
        assert Decimal(charged) > 0
