"""The Store contract, run against every adapter: SQLite and DynamoDB (moto, one request at a time).

Each test states one guarantee of store/base.py. Concurrency tests use threads that each open their
own store (their own connection or boto3 client), as separate processes or Lambda containers would.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_gateway.store import AlreadyExists, KeyCapReached, NotFound, open_store
from llm_gateway.store.base import Counter, Key, TaskRecord, UsageRecord, User
from tests.dynamo import table_prefix

NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    request.getfixturevalue("moto_dynamodb")
    return f"dynamodb://{table_prefix()}"


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    s.init()
    return s


def fresh(store_url: str):
    """Another process's view of the same store."""
    return open_store(store_url)


def make_user(store, balance: int = 1_000_000, **kw) -> str:
    user_id = "u-" + uuid.uuid4().hex[:8]
    store.create_user(User(user_id=user_id, balance=balance, created_at=NOW, **kw))
    return user_id


def make_key(store, user_id: str, max_keys: int | None = None, **kw) -> Key:
    key_id = "key_" + uuid.uuid4().hex[:12]
    return store.create_key(
        Key(key_id=key_id, key_hash="h" + uuid.uuid4().hex, user_id=user_id, key_hint="sk-abcde...wxyz",
            created_at=kw.pop("created_at", NOW), **kw),
        max_keys=max_keys,
    )


def record(user_id: str, key_id: str, *, reserved: int, cost: int, request_id: str | None = None,
           model: str = "m", created_at: float = NOW, **kw) -> UsageRecord:
    return UsageRecord(request_id=request_id or "req_" + uuid.uuid4().hex, user_id=user_id, key_id=key_id,
                       model=model, created_at=created_at, reserved=reserved, cost=cost, **kw)


def in_threads(n: int, fn) -> list:
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


# --- users and keys -------------------------------------------------------------------------------

def test_init_is_idempotent(store):
    store.init()
    assert store.count_users() == 0


def test_user_round_trip(store):
    user_id = make_user(store, balance=5, tier="vip", membership_expire_at=NOW + 10.5)
    user = store.get_user(user_id)
    assert (user.tier, user.balance, user.membership_expire_at, user.created_at, user.key_count) == (
        "vip", 5, NOW + 10.5, NOW, 0)
    assert store.get_user("nobody") is None
    assert store.count_users() == 1


def test_users_are_listed_in_order_of_id(store):
    assert store.list_users() == []
    for user_id in ("carol", "alice", "bob"):
        store.create_user(User(user_id=user_id, tier="vip", balance=7, created_at=NOW))
    listed = store.list_users()
    assert [u.user_id for u in listed] == ["alice", "bob", "carol"]
    assert listed[0] == store.get_user("alice")


def test_creating_an_existing_user_is_refused(store):
    user_id = make_user(store)
    with pytest.raises(AlreadyExists):
        store.create_user(User(user_id=user_id))


def test_update_user_sets_and_clears_fields(store):
    user_id = make_user(store, membership_expire_at=NOW)
    user = store.update_user(user_id, tier="premium", membership_expire_at=None)
    assert (user.tier, user.membership_expire_at) == ("premium", None)
    assert store.get_user(user_id).tier == "premium"
    with pytest.raises(NotFound):
        store.update_user("nobody", tier="vip")


def test_add_balance(store):
    user_id = make_user(store, balance=100)
    assert store.add_balance(user_id, 50).balance == 150
    assert store.add_balance(user_id, -200).balance == -50
    with pytest.raises(NotFound):
        store.add_balance("nobody", 1)


def test_key_round_trip_by_hash_and_id(store):
    user_id = make_user(store)
    key = make_key(store, user_id, remark="r", permissions=["gpt-4*", "mock-gpt"], rpm=7, max_fee=900,
                   expired_at=NOW + 60, is_admin=True)
    for found in (store.get_key_by_hash(key.key_hash), store.get_key(key.key_id)):
        assert found == key
        assert (found.permissions, found.rpm, found.max_fee, found.is_admin, found.used_times) == (
            ["gpt-4*", "mock-gpt"], 7, 900, True, 0)
    assert store.get_key_by_hash("nope") is None
    assert store.get_key("key_nope") is None
    assert store.get_user(user_id).key_count == 1


def test_list_keys_oldest_first(store):
    user_id = make_user(store)
    other = make_user(store)
    second = make_key(store, user_id, created_at=NOW + 1)
    first = make_key(store, user_id, created_at=NOW)
    make_key(store, other)
    assert [k.key_id for k in store.list_keys(user_id)] == [first.key_id, second.key_id]
    assert store.list_keys("nobody") == []


def test_update_key_sets_and_clears_fields(store):
    user_id = make_user(store)
    key = make_key(store, user_id, rpm=5, max_fee=10)
    updated = store.update_key(key.key_id, remark="x", permissions=[], rpm=None, is_disabled=True, max_fee=None)
    assert (updated.remark, updated.permissions, updated.rpm, updated.is_disabled, updated.max_fee) == (
        "x", [], None, True, None)
    assert store.get_key_by_hash(key.key_hash).is_disabled is True
    with pytest.raises(NotFound):
        store.update_key("key_nope", remark="x")
    with pytest.raises(ValueError):
        store.update_key(key.key_id, user_id="someone-else")


def test_delete_key_frees_its_slot_and_its_hash(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    store.delete_key(key.key_id)
    assert store.get_key(key.key_id) is None
    assert store.get_key_by_hash(key.key_hash) is None
    assert store.list_keys(user_id) == []
    assert store.get_user(user_id).key_count == 0
    with pytest.raises(NotFound):
        store.delete_key(key.key_id)


def test_key_for_a_missing_user_is_refused(store):
    with pytest.raises(NotFound):
        make_key(store, "nobody")


def test_key_cap(store):
    user_id = make_user(store)
    make_key(store, user_id, max_keys=2)
    make_key(store, user_id, max_keys=2)
    with pytest.raises(KeyCapReached):
        make_key(store, user_id, max_keys=2)
    assert store.get_user(user_id).key_count == 2
    assert len(store.list_keys(user_id)) == 2


def test_key_cap_holds_under_concurrent_creation(store, store_url):
    user_id = make_user(store)

    def create(i):
        try:
            make_key(fresh(store_url), user_id, max_keys=3)
            return True
        except KeyCapReached:
            return False

    assert sum(in_threads(8, create)) == 3
    assert store.get_user(user_id).key_count == 3


def test_duplicate_key_hash_is_refused(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    with pytest.raises(AlreadyExists):
        store.create_key(Key(key_id="key_other", key_hash=key.key_hash, user_id=user_id, key_hint="x"))
    assert store.get_user(user_id).key_count == 1


# --- admission ------------------------------------------------------------------------------------

def test_admit_counts_up_to_the_limit_then_refuses_with_retry_after(store):
    user_id = make_user(store)
    counter = Counter("rpm:" + user_id, limit=2)
    assert store.admit(user_id, None, [counter], 0, NOW).ok
    assert store.admit(user_id, None, [counter], 0, NOW + 10).ok
    refused = store.admit(user_id, None, [counter], 0, NOW + 20.5)
    assert (refused.ok, refused.refused, refused.counter_id, refused.retry_after) == (
        False, "rate", counter.counter_id, 40)


def test_window_resets_after_expiry(store):
    user_id = make_user(store)
    counter = Counter("rpm:" + user_id, limit=1)
    assert store.admit(user_id, None, [counter], 0, NOW).ok
    assert not store.admit(user_id, None, [counter], 0, NOW + 59).ok
    assert store.admit(user_id, None, [counter], 0, NOW + 60).ok
    assert not store.admit(user_id, None, [counter], 0, NOW + 61).ok
    assert store.admit(user_id, None, [counter], 0, NOW + 121).ok


def test_one_second_windows_for_the_platform_limits(store):
    user_id = make_user(store)
    counter = Counter("writes:" + user_id, limit=10, window=1.0)
    assert all(store.admit(user_id, None, [counter], 0, NOW + i / 100).ok for i in range(10))
    refused = store.admit(user_id, None, [counter], 0, NOW + 0.25)
    assert (refused.refused, refused.retry_after) == ("rate", 1)
    assert store.admit(user_id, None, [counter], 0, NOW + 1.0).ok  # a new window
    assert all(store.admit(user_id, None, [counter], 0, NOW + 1.0 + i / 100).ok for i in range(1, 10))
    assert not store.admit(user_id, None, [counter], 0, NOW + 1.5).ok


def test_window_state_is_shared_between_processes(store, store_url):
    user_id = make_user(store)
    counter = Counter("rpm:" + user_id, limit=2)
    assert store.admit(user_id, None, [counter], 0, NOW).ok
    assert fresh(store_url).admit(user_id, None, [counter], 0, NOW + 1).ok
    refused = store.admit(user_id, None, [counter], 0, NOW + 2)
    assert (refused.refused, refused.retry_after) == ("rate", 58)


def test_second_counter_refusal_names_it_and_counts_nothing(store):
    user_id = make_user(store)
    model = Counter("rpm:m:" + user_id, limit=10)
    key = Counter("rpm-key:" + user_id, limit=1)
    assert store.admit(user_id, None, [model, key], 0, NOW).ok
    refused = store.admit(user_id, None, [model, key], 0, NOW + 1)
    assert (refused.refused, refused.counter_id) == ("rate", key.counter_id)
    # the model counter did not count the refused request: 9 more fit in its window
    for i in range(9):
        assert store.admit(user_id, None, [model], 0, NOW + 2 + i).ok
    assert not store.admit(user_id, None, [model], 0, NOW + 20).ok


def test_admit_reserves_from_balance_and_key(store):
    user_id = make_user(store, balance=1000)
    key = make_key(store, user_id, max_fee=500)
    assert store.admit(user_id, key.key_id, [Counter("c:" + user_id, 5)], 300, NOW).ok
    assert store.get_user(user_id).balance == 700
    stored = store.get_key(key.key_id)
    assert (stored.held, stored.fee_remaining()) == (300, 200)


def test_funds_refusal_holds_nothing_and_counts_nothing(store):
    user_id = make_user(store, balance=100)
    counter = Counter("c:" + user_id, limit=1)
    refused = store.admit(user_id, None, [counter], 101, NOW)
    assert (refused.ok, refused.refused) == (False, "funds_user")
    assert store.get_user(user_id).balance == 100
    assert store.admit(user_id, None, [counter], 100, NOW + 1).ok  # the slot was still free
    assert store.get_user(user_id).balance == 0


def test_key_max_fee_refuses_beyond_the_cap(store):
    user_id = make_user(store, balance=10_000)
    key = make_key(store, user_id, max_fee=500)
    assert store.admit(user_id, key.key_id, [], 400, NOW).ok
    refused = store.admit(user_id, key.key_id, [Counter("c:" + user_id, 5)], 101, NOW)
    assert (refused.ok, refused.refused) == (False, "funds_key")
    assert store.get_user(user_id).balance == 9_600
    assert store.get_key(key.key_id).held == 400
    assert store.admit(user_id, key.key_id, [], 100, NOW).ok


def test_raising_a_keys_max_fee_admits_again(store):
    user_id = make_user(store, balance=10_000)
    key = make_key(store, user_id, max_fee=100)
    assert store.admit(user_id, key.key_id, [], 100, NOW).ok
    assert store.settle(record(user_id, key.key_id, reserved=100, cost=100))
    assert store.admit(user_id, key.key_id, [], 1, NOW).refused == "funds_key"
    store.update_key(key.key_id, max_fee=150)
    assert store.admit(user_id, key.key_id, [], 50, NOW).ok
    store.update_key(key.key_id, max_fee=None)
    assert store.admit(user_id, key.key_id, [], 5_000, NOW).ok


def test_rate_refusal_holds_no_money(store):
    user_id = make_user(store, balance=1000)
    key = make_key(store, user_id, max_fee=1000)
    counter = Counter("c:" + user_id, limit=1)
    assert store.admit(user_id, key.key_id, [counter], 100, NOW).ok
    assert store.admit(user_id, key.key_id, [counter], 100, NOW + 1).refused == "rate"
    assert store.get_user(user_id).balance == 900
    assert store.get_key(key.key_id).held == 100


def test_zero_reserve_needs_no_funds(store):
    user_id = make_user(store, balance=0)
    assert store.admit(user_id, None, [Counter("c:" + user_id, 1)], 0, NOW).ok


def test_concurrent_hits_admit_exactly_the_limit(store, store_url):
    user_id = make_user(store)
    counter = Counter("rpm:" + user_id, limit=5)
    results = in_threads(12, lambda i: fresh(store_url).admit(user_id, None, [counter], 0, NOW + i * 0.01))
    assert sum(r.ok for r in results) == 5
    assert all(r.refused == "rate" for r in results if not r.ok)


def test_balance_never_goes_below_zero_under_concurrent_reservations(store, store_url):
    user_id = make_user(store, balance=1_000)
    results = in_threads(10, lambda i: fresh(store_url).admit(user_id, None, [], 300, NOW))
    assert sum(r.ok for r in results) == 3
    assert store.get_user(user_id).balance == 100


def test_key_cap_on_spend_holds_under_concurrent_reservations(store, store_url):
    user_id = make_user(store, balance=100_000)
    key = make_key(store, user_id, max_fee=1_000)
    results = in_threads(8, lambda i: fresh(store_url).admit(user_id, key.key_id, [], 250, NOW))
    assert sum(r.ok for r in results) == 4
    assert store.get_key(key.key_id).held == 1_000
    assert store.get_user(user_id).balance == 99_000


# --- settlement -----------------------------------------------------------------------------------

def test_settle_moves_reservation_to_cost_and_records_usage(store):
    user_id = make_user(store, balance=1000)
    key = make_key(store, user_id, max_fee=800)
    assert store.admit(user_id, key.key_id, [], 300, NOW).ok
    assert store.settle(record(user_id, key.key_id, reserved=300, cost=120, input_tokens=10, output_tokens=5))
    assert store.get_user(user_id).balance == 880
    stored = store.get_key(key.key_id)
    assert (stored.held, stored.used_fee, stored.used_times, stored.used_at, stored.fee_remaining()) == (
        0, 120, 1, NOW, 680)


def test_settle_is_exactly_once(store):
    user_id = make_user(store, balance=1000)
    key = make_key(store, user_id)
    assert store.admit(user_id, key.key_id, [], 300, NOW).ok
    rec = record(user_id, key.key_id, reserved=300, cost=100)
    assert store.settle(rec) is True
    assert store.settle(rec) is False
    replay = record(user_id, key.key_id, reserved=300, cost=250, request_id=rec.request_id, created_at=NOW + 5)
    assert store.settle(replay) is False
    assert store.get_user(user_id).balance == 900
    assert store.get_key(key.key_id).used_times == 1
    assert store.list_usage(user_id).total == 1


def test_concurrent_replays_settle_once(store, store_url):
    user_id = make_user(store, balance=1000)
    key = make_key(store, user_id)
    assert store.admit(user_id, key.key_id, [], 300, NOW).ok
    rec = record(user_id, key.key_id, reserved=300, cost=100)
    assert sum(in_threads(6, lambda i: fresh(store_url).settle(rec))) == 1
    assert store.get_user(user_id).balance == 900


def test_cost_beyond_reservation_may_take_balance_below_zero(store):
    user_id = make_user(store, balance=100)
    key = make_key(store, user_id)
    assert store.admit(user_id, key.key_id, [], 100, NOW).ok
    assert store.settle(record(user_id, key.key_id, reserved=100, cost=130))
    assert store.get_user(user_id).balance == -30


def test_usage_listing_newest_first_with_filters_and_sums(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    other = make_user(store)
    for i in range(5):
        store.settle(record(user_id, key.key_id, reserved=0, cost=10 * (i + 1), created_at=NOW + i,
                            model="a" if i % 2 == 0 else "b", input_tokens=1, cache_read_tokens=2,
                            output_tokens=3, route="/v1/chat/completions", latency_ms=7))
    store.settle(record(other, key.key_id, reserved=0, cost=999, created_at=NOW))
    page = store.list_usage(user_id, limit=2)
    assert (page.total, page.requests, page.cost, page.input_tokens, page.output_tokens) == (5, 5, 150, 15, 15)
    assert [r.created_at for r in page.records] == [NOW + 4, NOW + 3]
    first = page.records[0]
    assert (first.model, first.route, first.latency_ms, first.status, first.cost) == (
        "a", "/v1/chat/completions", 7, "ok", 50)
    assert [r.created_at for r in store.list_usage(user_id, offset=3, limit=10).records] == [NOW + 1, NOW]
    assert store.list_usage(user_id, since=NOW + 1, until=NOW + 3).total == 2
    by_model = store.list_usage(user_id, model="a")
    assert (by_model.total, by_model.cost) == (3, 90)
    assert store.list_usage("nobody").total == 0


def test_usage_records_carry_their_non_token_units(store, store_url):
    user_id = make_user(store)
    key = make_key(store, user_id)
    units = {"images": {"1024x1024/hd": 2, "*/low": 1}, "characters": 1200, "audio_input_tokens": 5,
             "audio_output_tokens": 7, "requests": 0, "pool": "FAST"}
    assert store.settle(record(user_id, key.key_id, reserved=0, cost=5, created_at=NOW + 1, units=units))
    assert store.settle(record(user_id, key.key_id, reserved=0, cost=3, created_at=NOW, input_tokens=4))
    newest, plain = fresh(store_url).list_usage(user_id).records
    assert (newest.units, newest.cost) == (units, 5)
    assert (plain.units, plain.input_tokens) == ({}, 4)


# --- usage summaries ------------------------------------------------------------------------------

MIDNIGHT = 1_799_971_200.0  # the UTC midnight before NOW: 2027-01-15T00:00:00Z
DAY = 86_400.0


def settle_spread(store, user_id: str, key_id: str) -> None:
    """Five records around UTC midnights, each with 1 input, 2 cache-read, 3 cache-write and 4 output
    tokens, costs 1, 2, 4, 8, 16 (so every subset sums differently)."""
    spots = [(MIDNIGHT - 0.000001, "a", 1), (MIDNIGHT, "a", 2), (MIDNIGHT + DAY - 0.000001, "b", 4),
             (MIDNIGHT + DAY, "b", 8), (MIDNIGHT + 3 * DAY + 5, "a", 16)]
    for created_at, model, cost in spots:
        assert store.settle(record(user_id, key_id, reserved=0, cost=cost, created_at=created_at, model=model,
                                   input_tokens=1, cache_read_tokens=2, cache_write_tokens=3, output_tokens=4))


def sums(summary) -> list[tuple]:
    return [(g.key, g.requests, g.input_tokens, g.output_tokens, g.cost) for g in summary.groups]


def test_usage_summary_sums_each_utc_day_in_order(store, store_url):
    user_id = make_user(store)
    key = make_key(store, user_id)
    settle_spread(store, user_id, key.key_id)
    store.settle(record(make_user(store), key.key_id, reserved=0, cost=999, created_at=MIDNIGHT))
    summary = fresh(store_url).summarise_usage(user_id)
    assert sums(summary) == [("2027-01-14", 1, 6, 4, 1), ("2027-01-15", 2, 12, 8, 6), ("2027-01-16", 1, 6, 4, 8),
                             ("2027-01-18", 1, 6, 4, 16)]
    total = summary.total
    assert (total.requests, total.input_tokens, total.output_tokens, total.cost) == (5, 30, 20, 31)


def test_usage_summary_by_model(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    settle_spread(store, user_id, key.key_id)
    assert sums(store.summarise_usage(user_id, group="model")) == [("a", 3, 18, 12, 19), ("b", 2, 12, 8, 12)]


def test_usage_summary_honours_the_range_and_the_model(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    settle_spread(store, user_id, key.key_id)
    one_day = store.summarise_usage(user_id, since=MIDNIGHT, until=MIDNIGHT + DAY)
    assert sums(one_day) == [("2027-01-15", 2, 12, 8, 6)]
    assert one_day.total.cost == 6
    assert sums(store.summarise_usage(user_id, model="b")) == [("2027-01-15", 1, 6, 4, 4), ("2027-01-16", 1, 6, 4, 8)]
    assert sums(store.summarise_usage(user_id, since=MIDNIGHT + DAY, group="model")) == [
        ("a", 1, 6, 4, 16), ("b", 1, 6, 4, 8)]
    empty = store.summarise_usage("nobody")
    assert (empty.groups, empty.total.requests, empty.total.cost) == ([], 0, 0)


def test_usage_summary_refuses_an_unknown_grouping(store):
    with pytest.raises(ValueError):
        store.summarise_usage(make_user(store), group="week")


def test_dynamodb_usage_summary_reads_only_the_records_in_range(dynamo_store):
    store = dynamo_store
    user_id = make_user(store)
    key = make_key(store, user_id)
    settle_usage(store, user_id, key.key_id, [MIDNIGHT - DAY + i for i in range(20)])  # the day before
    settle_usage(store, user_id, key.key_id, [MIDNIGHT + i for i in range(7)])
    settle_usage(store, user_id, key.key_id, [MIDNIGHT + DAY + i for i in range(20)])  # the day after
    reads: list[int] = []  # items each Query read (ScannedCount), before its filter
    store._client.meta.events.register("after-call.dynamodb.Query",
                                       lambda parsed, **kw: reads.append(parsed["ScannedCount"]))
    assert sums(store.summarise_usage(user_id, since=MIDNIGHT, until=MIDNIGHT + DAY)) == [("2027-01-15", 7, 0, 0, 7)]
    assert sum(reads) == 7


# --- asynchronous tasks ---------------------------------------------------------------------------

def make_task(store, user_id: str, *, upstream_id: str | None = None, **kw) -> TaskRecord:
    task = TaskRecord(task_id=store.next_task_id(), user_id=user_id, key_id="key_x", action="IMAGINE",
                      provider="midjourney", upstream_id=upstream_id or uuid.uuid4().hex, submit_time=NOW,
                      updated_at=NOW, prompt="a cat", actions=[{"customId": "MJ::JOB::upsample::1::h", "emoji": "",
                                                                 "label": "U1"}],
                      ticket={"request_id": "r", "reserved": 5}, **kw)
    store.create_task(task)
    return task


def test_task_ids_are_integers_unique_across_processes(store, store_url):
    def take(_: int) -> list[int]:
        own = fresh(store_url)
        return [own.next_task_id() for _ in range(10)]

    with ThreadPoolExecutor(4) as pool:
        ids = [i for batch in pool.map(take, range(4)) for i in batch]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 40


def test_a_task_round_trips_and_is_found_by_its_upstream_id(store, store_url):
    user_id = make_user(store)
    task = make_task(store, user_id, upstream_id="up-1-" + uuid.uuid4().hex)
    other = fresh(store_url)
    assert other.get_task(user_id, task.task_id) == task
    assert other.find_task("midjourney", task.upstream_id) == task
    assert other.find_task("mock", task.upstream_id) is None
    with pytest.raises(AlreadyExists):
        store.create_task(task)


def test_another_users_task_is_not_found(store):
    owner, stranger = make_user(store), make_user(store)
    task = make_task(store, owner)
    assert store.get_task(stranger, task.task_id) is None
    assert store.get_task(owner, task.task_id + 10_000) is None


def test_tasks_are_listed_newest_first_per_user_with_their_total(store):
    user_id = make_user(store)
    made = [make_task(store, user_id).task_id for _ in range(7)]
    make_task(store, make_user(store))
    total, first = store.list_tasks(user_id, offset=0, limit=5)
    total2, second = store.list_tasks(user_id, offset=5, limit=5)
    assert total == total2 == 7
    assert [t.task_id for t in first + second] == sorted(made, reverse=True)
    assert store.list_tasks("nobody") == (0, [])


def test_a_task_only_moves_forward(store):
    user_id = make_user(store)
    task = make_task(store, user_id)
    moved = store.advance_task(user_id, task.task_id, "IN_PROGRESS", 40, {"image_dc_url": "http://x/1.png"})
    assert (moved.status, moved.progress, moved.image_dc_url, moved.prompt) == ("IN_PROGRESS", 40, "http://x/1.png", "a cat")
    assert store.advance_task(user_id, task.task_id, "IN_PROGRESS", 40, {}) is None  # repeated
    assert store.advance_task(user_id, task.task_id, "IN_PROGRESS", 30, {}) is None  # late
    assert store.advance_task(user_id, task.task_id, "SUBMITTED", 90, {}) is None  # back
    done = store.advance_task(user_id, task.task_id, "SUCCESS", 100, {"finish_time": NOW + 5, "actions": []})
    assert (done.status, done.finish_time, done.actions) == ("SUCCESS", NOW + 5, [])
    assert store.advance_task(user_id, task.task_id, "FAILURE", 100, {"fail_reason": "late"}) is None  # final
    assert store.advance_task(make_user(store), task.task_id, "FAILURE", 100, {}) is None  # not theirs
    assert store.get_task(user_id, task.task_id) == done


def test_racing_updates_of_a_task_apply_each_step_at_most_once_and_never_move_it_back(store, store_url):
    user_id = make_user(store)
    task = make_task(store, user_id)
    steps = [("IN_PROGRESS", p) for p in (10, 20, 30, 50, 70, 90)] + [("SUCCESS", 100), ("FAILURE", 100)]
    applied: list[tuple[str, int]] = []
    lock = threading.Lock()

    def racer(seed: int) -> None:
        own = fresh(store_url)
        order = steps[seed % len(steps):] + steps[:seed % len(steps)]
        for status, progress in order:
            if own.advance_task(user_id, task.task_id, status, progress, {}) is not None:
                with lock:
                    applied.append((status, progress))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get_task(user_id, task.task_id)
    assert final.status in ("SUCCESS", "FAILURE") and final.progress == 100
    assert len(applied) == len(set(applied))  # no step applied twice
    assert sum(1 for status, _ in applied if status in ("SUCCESS", "FAILURE")) == 1  # one final transition


def test_a_tasks_stored_file_is_recorded(store):
    user_id = make_user(store)
    task = make_task(store, user_id)
    store.set_task_file(user_id, task.task_id, "f-123")
    assert store.get_task(user_id, task.task_id).file_id == "f-123"
    with pytest.raises(NotFound):
        store.set_task_file(make_user(store), task.task_id, "f-9")


def test_open_tasks_are_the_ones_not_final_oldest_first_across_users(store):
    a, b = make_user(store), make_user(store)
    first, second, third, fourth = make_task(store, a), make_task(store, b), make_task(store, a), make_task(store, b)
    store.advance_task(a, first.task_id, "IN_PROGRESS", 10, {})
    store.advance_task(b, second.task_id, "SUCCESS", 100, {})
    store.advance_task(a, third.task_id, "FAILURE", 0, {"fail_reason": "x"})
    assert [t.task_id for t in store.open_tasks()] == [first.task_id, fourth.task_id]
    assert store.open_tasks()[0] == store.get_task(a, first.task_id)  # the whole task, as stored
    assert [t.task_id for t in store.open_tasks(limit=1)] == [first.task_id]
    store.advance_task(a, first.task_id, "SUCCESS", 100, {})
    assert [t.task_id for t in store.open_tasks()] == [fourth.task_id]


# --- catalog overrides ----------------------------------------------------------------------------

def test_catalog_overrides_merge_and_bump_the_version(store):
    assert store.catalog_version() == 0
    assert store.get_catalog_overrides() == {"models": {}, "tiers": {}}
    store.set_model_override("m1", {"provider": "mock", "input": "1.5", "rpm": {"vip": 9}})
    store.set_model_override("m1", {"output": "3"})
    store.set_tier_override("vip", {"multiplier": "0.9"})
    assert store.catalog_version() == 3
    assert store.get_catalog_overrides() == {
        "models": {"m1": {"provider": "mock", "input": "1.5", "rpm": {"vip": 9}, "output": "3"}},
        "tiers": {"vip": {"multiplier": "0.9"}},
    }


def test_deleting_a_model_override_removes_all_its_fields_and_bumps_the_version(store, store_url):
    store.set_model_override("m1", {"provider": "mock", "input": "1.5"})
    store.set_model_override("m2", {"provider": "openai"})
    store.set_tier_override("vip", {"multiplier": "0.9"})
    store.delete_model_override("m1")
    other = fresh(store_url)  # another process (a running server) sees the change by the version
    assert other.catalog_version() == 4
    assert other.get_catalog_overrides() == {"models": {"m2": {"provider": "openai"}},
                                             "tiers": {"vip": {"multiplier": "0.9"}}}
    # Gone means gone: setting it again starts from nothing, not from the deleted fields.
    store.set_model_override("m1", {"output": "3"})
    assert store.get_catalog_overrides()["models"]["m1"] == {"output": "3"}


def test_deleting_a_missing_model_override_is_refused_and_writes_nothing(store):
    store.set_tier_override("vip", {"rpm": 7})
    with pytest.raises(NotFound):
        store.delete_model_override("m-none")
    with pytest.raises(NotFound):
        store.delete_model_override("vip")  # a tier's override is not a model's
    assert store.catalog_version() == 1
    assert store.get_catalog_overrides() == {"models": {}, "tiers": {"vip": {"rpm": 7}}}


# --- upstream channels ----------------------------------------------------------------------------

def test_channels_are_added_merged_listed_and_bump_the_catalog_version(store, store_url):
    store.put_channel("oa-1", {"provider": "openai", "api_key_env": "OPENAI_KEY_1", "models": ["gpt-4o*"],
                               "map": {"gpt-4o": "gpt-4o-2024"}, "priority": 1}, exists=False)
    store.put_channel("oa-1", {"weight": 3, "enabled": False}, exists=True)
    store.put_channel("az", {"provider": "azure", "api_version": "2024-10-21"})
    other = fresh(store_url)
    assert other.catalog_version() == 3
    assert other.list_channels() == {
        "oa-1": {"provider": "openai", "api_key_env": "OPENAI_KEY_1", "models": ["gpt-4o*"],
                 "map": {"gpt-4o": "gpt-4o-2024"}, "priority": 1, "weight": 3, "enabled": False},
        "az": {"provider": "azure", "api_version": "2024-10-21"},
    }
    # Channels are not model or tier overrides.
    assert other.get_catalog_overrides() == {"models": {}, "tiers": {}}


def test_adding_an_existing_channel_or_setting_a_missing_one_is_refused_and_writes_nothing(store):
    store.put_channel("oa-1", {"provider": "openai"}, exists=False)
    with pytest.raises(AlreadyExists):
        store.put_channel("oa-1", {"provider": "azure"}, exists=False)
    with pytest.raises(NotFound):
        store.put_channel("none", {"weight": 2}, exists=True)
    assert store.catalog_version() == 1
    assert store.list_channels() == {"oa-1": {"provider": "openai"}}


def test_deleting_a_channel_removes_it_and_bumps_the_version_once(store):
    store.put_channel("oa-1", {"provider": "openai", "weight": 2})
    store.delete_channel("oa-1")
    with pytest.raises(NotFound):
        store.delete_channel("oa-1")
    assert store.catalog_version() == 2
    assert store.list_channels() == {}
    store.put_channel("oa-1", {"provider": "anthropic"})  # gone means gone: no old fields come back
    assert store.list_channels() == {"oa-1": {"provider": "anthropic"}}


# --- usage cursors --------------------------------------------------------------------------------

def settle_usage(store, user_id: str, key_id: str, times: list[float], **kw) -> list[str]:
    """Settled records at `times`; their request ids, newest first as the listing orders them."""
    recs = [record(user_id, key_id, reserved=0, cost=1, created_at=t, **kw) for t in times]
    for r in recs:
        assert store.settle(r)
    return [r.request_id for r in sorted(recs, key=lambda r: (r.created_at, r.request_id), reverse=True)]


def walk(store, user_id: str, limit: int, between=None, **filters) -> list[list[str]]:
    """Every page's request ids, following next_cursor until it is None; `between(n)` runs after page n."""
    pages, cursor = [], None
    while True:
        page = store.list_usage(user_id, limit=limit, cursor=cursor, **filters)
        pages.append([r.request_id for r in page.records])
        if between:
            between(len(pages))
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 50, "the walk does not end"


@pytest.mark.parametrize("with_totals", [True, False])
def test_usage_cursor_walk_returns_every_record_once_newest_first(store, with_totals):
    user_id = make_user(store)
    key = make_key(store, user_id)
    # ties on created_at are ordered by request id, and a cursor may fall between them
    newest_first = settle_usage(store, user_id, key.key_id, [NOW, NOW + 1, NOW + 1, NOW + 1, NOW + 2, NOW + 3, NOW + 3])
    settle_usage(store, make_user(store), key.key_id, [NOW + 1])
    pages = walk(store, user_id, 3, with_totals=with_totals)
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]
    assert walk(store, user_id, 7) == [newest_first]  # a full last page says no more follow
    assert walk(store, user_id, 6) == [newest_first[:6], newest_first[6:]]
    assert walk(store, "nobody", 3) == [[]]
    page = store.list_usage(user_id, limit=3, with_totals=with_totals,
                            cursor=store.list_usage(user_id, limit=3).next_cursor)
    totals = (page.total, page.requests, page.cost, page.input_tokens, page.output_tokens)
    assert totals == ((7, 7, 7, 0, 0) if with_totals else (None,) * 5)  # totals cover the whole range


def test_usage_cursor_walk_is_stable_under_newer_inserts(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    newest_first = settle_usage(store, user_id, key.key_id, [NOW + i for i in range(6)])

    def settle_a_newer_one(pages_read: int) -> None:
        settle_usage(store, user_id, key.key_id, [NOW + 100 + pages_read])

    pages = walk(store, user_id, 2, between=settle_a_newer_one)
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:6]]
    assert store.list_usage(user_id).total == 9


def test_usage_cursor_walk_honours_the_filters(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    a = settle_usage(store, user_id, key.key_id, [NOW + i for i in range(0, 12, 2)], model="a")
    b = settle_usage(store, user_id, key.key_id, [NOW + i for i in range(1, 12, 2)], model="b")
    assert sum(walk(store, user_id, 2, model="a"), []) == a
    assert sum(walk(store, user_id, 4, model="b", with_totals=False), []) == b
    # since is inclusive, until exclusive: NOW+8 (a), NOW+7 (b) ... NOW+3 (b)
    window = [a[1], b[2], a[2], b[3], a[3], b[4]]
    assert sum(walk(store, user_id, 2, since=NOW + 3, until=NOW + 9), []) == window
    assert sum(walk(store, user_id, 5, since=NOW + 3, until=NOW + 9, with_totals=False), []) == window
    assert sum(walk(store, user_id, 1, since=NOW + 9, model="b"), []) == b[:2]


def test_usage_cursor_offset_pages_and_cursor_pages_agree(store):
    user_id = make_user(store)
    key = make_key(store, user_id)
    newest_first = settle_usage(store, user_id, key.key_id, [NOW + i for i in range(5)])
    first = store.list_usage(user_id, limit=2, offset=2)  # an offset page hands out a cursor too
    assert [r.request_id for r in first.records] == newest_first[2:4]
    rest = store.list_usage(user_id, limit=2, cursor=first.next_cursor)
    assert ([r.request_id for r in rest.records], rest.next_cursor) == (newest_first[4:], None)
    assert store.list_usage(user_id, limit=2, offset=4).next_cursor is None
    assert store.list_usage(user_id, limit=2, offset=1, with_totals=False).records == \
        store.list_usage(user_id, limit=2, offset=1).records


def test_usage_cursor_refuses_garbage_and_other_listings(store):
    user_id = make_user(store)
    other = make_user(store)
    key = make_key(store, user_id)
    settle_usage(store, user_id, key.key_id, [NOW + i for i in range(3)], model="a")
    cursor = store.list_usage(user_id, limit=1, model="a", since=NOW).next_cursor
    assert cursor and all(c.isalnum() or c in "-_" for c in cursor)
    assert len(store.list_usage(user_id, limit=1, model="a", since=NOW, cursor=cursor).records) == 1
    forged = base64.urlsafe_b64encode(json.dumps([1, NOW - 5, "req_x", user_id, NOW, None, "a"]).encode())
    for bad in ["garbage!", "", "Zm9v", cursor[:-3], base64.urlsafe_b64encode(b"[1,2,3]").decode(),
                forged.decode().rstrip("=")]:
        with pytest.raises(ValueError):
            store.list_usage(user_id, limit=1, model="a", since=NOW, cursor=bad)
    for filters in [{"model": "b", "since": NOW}, {"model": "a"}, {"model": "a", "since": NOW, "until": NOW + 9}]:
        with pytest.raises(ValueError):
            store.list_usage(user_id, limit=1, cursor=cursor, **filters)
    with pytest.raises(ValueError):
        store.list_usage(other, limit=1, model="a", since=NOW, cursor=cursor)
    with pytest.raises(ValueError):
        store.list_usage(user_id, limit=1, model="a", since=NOW, cursor=cursor, offset=1)


def test_dynamodb_listing_without_totals_reads_only_about_a_page(dynamo_store):
    store = dynamo_store
    user_id = make_user(store)
    key = make_key(store, user_id)
    newest_first = settle_usage(store, user_id, key.key_id, [NOW + i for i in range(100)])
    rare = settle_usage(store, user_id, key.key_id, [NOW + 0.5 + i for i in range(0, 100, 20)], model="rare")
    reads: list[int] = []  # items each Query read (ScannedCount), before its filter
    store._client.meta.events.register("after-call.dynamodb.Query",
                                       lambda parsed, **kw: reads.append(parsed["ScannedCount"]))

    page = store.list_usage(user_id, limit=5, with_totals=False)
    assert [r.request_id for r in page.records] == newest_first[:5]
    assert reads == [6]  # one Query: the page and one more to tell that more follow
    reads.clear()
    page = store.list_usage(user_id, limit=5, with_totals=False, cursor=page.next_cursor)
    assert [r.request_id for r in page.records] == newest_first[5:10]
    assert reads == [6]
    reads.clear()
    page = store.list_usage(user_id, limit=2, with_totals=False, model="rare")
    assert [r.request_id for r in page.records] == rare[:2]
    assert reads == [3, 6, 12, 24, 48]  # pages double while the filter leaves them short
    reads.clear()

    assert store.list_usage(user_id, limit=5).total == 105  # with totals: the whole range, as before
    assert sum(reads) == 105


# Before usage records had units: what `init` finds in a database made by an earlier version.
_OLD_USAGE_TABLE = """
CREATE TABLE usage (
    request_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    cost INTEGER NOT NULL, reserved INTEGER NOT NULL, latency_ms INTEGER NOT NULL, status TEXT NOT NULL
);
INSERT INTO usage VALUES ('req_old', 'u-old', 'key_old', 'gpt-4o', '/v1/chat/completions', 1800000000.0,
                          10, 5, 0, 0, 75, 100, 12, 'ok');
"""


def test_sqlite_init_adds_the_units_column_to_an_older_database(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(_OLD_USAGE_TABLE)
    store = open_store(f"sqlite:///{path}")
    store.init()
    store.init()  # idempotent: the column is added once
    (kept,) = store.list_usage("u-old").records
    assert (kept.request_id, kept.cost, kept.input_tokens, kept.units) == ("req_old", 75, 10, {})
    user_id = make_user(store)
    key = make_key(store, user_id)
    assert store.settle(record(user_id, key.key_id, reserved=0, cost=1, units={"characters": 9}))
    assert open_store(f"sqlite:///{path}").list_usage(user_id).records[0].units == {"characters": 9}


# --- search answer cache ------------------------------------------------------------------------

def test_cache_round_trip_is_seen_by_another_process_and_replaced_in_place(store, store_url):
    import time

    from llm_gateway.store.base import CachedAnswer

    key = "k" + uuid.uuid4().hex
    assert store.get_cached(key) is None
    now = time.time()
    answer = json.dumps({"organic": [{"title": "é ✓", "position": 1}]}, ensure_ascii=False)
    assert store.put_cached(key, answer, now) is True
    assert fresh(store_url).get_cached(key) == CachedAnswer(answer, now)
    assert store.put_cached(key, '{"b": 2}', now + 1) is True
    assert fresh(store_url).get_cached(key) == CachedAnswer('{"b": 2}', now + 1)
    assert store.get_cached("other" + key) is None


def test_cache_entries_older_than_the_longest_allowed_age_are_gone(store):
    import time

    from llm_gateway.store.base import CACHE_MAX_AGE

    key = "k" + uuid.uuid4().hex
    assert store.put_cached(key, "{}", time.time() - CACHE_MAX_AGE - 5)
    assert store.get_cached(key) is None
    young = "k" + uuid.uuid4().hex
    assert store.put_cached(young, "{}", time.time() - CACHE_MAX_AGE + 60)
    assert store.get_cached(young) is not None


def test_cache_refuses_an_answer_over_the_size_limit(store):
    import time

    from llm_gateway.store.base import CACHE_MAX_BYTES

    key = "k" + uuid.uuid4().hex
    assert store.put_cached(key, "x" * (CACHE_MAX_BYTES + 1), time.time()) is False
    assert store.get_cached(key) is None
    assert store.put_cached(key, "x" * CACHE_MAX_BYTES, time.time()) is True  # the limit itself fits
    assert len(store.get_cached(key).answer) == CACHE_MAX_BYTES


def test_dynamodb_cache_items_carry_a_ttl(dynamo_store):
    import time

    from llm_gateway.store.base import CACHE_MAX_AGE

    now = time.time()
    assert dynamo_store.put_cached("ttl-check", "{}", now)
    item = dynamo_store._get("counters", {"counter_id": {"S": "cache#ttl-check"}})
    assert now + CACHE_MAX_AGE <= float(item["expires_at"]["N"]) <= now + CACHE_MAX_AGE + 2


# --- responses (API.md 3.8) ------------------------------------------------------------------------

def _response(user_id: str, document: str | None, created_at: float | None = None, model: str = "m"):
    import time

    from llm_gateway.store.base import StoredResponse

    return StoredResponse("resp_" + uuid.uuid4().hex, user_id, model, created_at or time.time(), document)


def test_a_stored_response_is_seen_by_another_process_with_its_owner_and_document(store, store_url):
    document = json.dumps({"response": {"output": [{"text": "é ✓"}]}, "input_items": []}, ensure_ascii=False)
    kept = _response("u-owner", document, model="claude-x")
    store.put_response(kept)
    assert fresh(store_url).get_response(kept.response_id) == kept
    assert store.get_response("resp_unknown" + uuid.uuid4().hex) is None


def test_a_forwarded_response_is_only_its_owner(store, store_url):
    kept = _response("u-owner", None, model="gpt-x")
    store.put_response(kept)
    assert fresh(store_url).get_response(kept.response_id) == kept


def test_a_response_larger_than_one_dynamodb_item_round_trips(store, store_url):
    # random text barely compresses: well over 400 KB stored, so the document spans several items
    document = json.dumps({"blob": base64.b64encode(uuid.uuid4().bytes * 1 + bytes(range(256)) * 10).decode(),
                           "noise": base64.b64encode(__import__("os").urandom(1_200_000)).decode()})
    kept = _response("u-big", document)
    store.put_response(kept)
    assert fresh(store_url).get_response(kept.response_id).document == document


def test_a_deleted_response_is_gone_and_deleting_again_finds_nothing(store, store_url):
    kept = _response("u-del", json.dumps({"x": 1}) * 1)
    big = _response("u-del", base64.b64encode(__import__("os").urandom(900_000)).decode())
    for record in (kept, big):
        store.put_response(record)
        assert store.delete_response(record.response_id) is True
        assert fresh(store_url).get_response(record.response_id) is None
        assert store.delete_response(record.response_id) is False


def test_responses_older_than_thirty_days_are_gone(store):
    import time

    from llm_gateway.store.base import RESPONSE_TTL

    old = _response("u-old", "{}", created_at=time.time() - RESPONSE_TTL - 5)
    store.put_response(old)
    assert store.get_response(old.response_id) is None
    young = _response("u-old", "{}", created_at=time.time() - RESPONSE_TTL + 60)
    store.put_response(young)
    assert store.get_response(young.response_id) == young


def test_dynamodb_response_items_carry_a_ttl_and_stay_under_the_item_limit(dynamo_store):
    import os
    import time

    from llm_gateway.store.base import RESPONSE_TTL, StoredResponse

    now = time.time()
    dynamo_store.put_response(StoredResponse("resp_ttl", "u", "m", now, base64.b64encode(os.urandom(800_000)).decode()))
    items = dynamo_store._client.query(
        TableName=dynamo_store.tables["usage"], KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "resp#resp_ttl"}})["Items"]
    assert len(items) >= 3  # the head and its parts
    for item in items:
        assert now + RESPONSE_TTL <= float(item["expires_at"]["N"]) <= now + RESPONSE_TTL + 2
        assert sum(len(v.get("B", b"")) for v in item.values()) <= 350_000
