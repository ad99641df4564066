"""Usage retention on the SQLite store (GATEWAY_USAGE_RETENTION_DAYS): the server prunes every few
seconds, so a round deletes what is due and reads little more than that."""

from __future__ import annotations

import time

from llm_gateway.billing.retry import housekeeping
from llm_gateway.store import open_store
from tests.contract.test_store_contract import make_key, make_user, record

DAY = 86_400.0


def _store_with_usage(tmp_path, ages_days: list[float]):
    store = open_store(f"sqlite:///{tmp_path / 'retention.db'}")
    store.init()
    user_id = make_user(store)
    key = make_key(store, user_id)
    now = time.time()
    for age in ages_days:
        store.settle(record(user_id, key.key_id, reserved=0, cost=1, created_at=now - age * DAY))
    return store, user_id


def test_records_past_the_retention_go_and_the_others_stay(tmp_path):
    store, user_id = _store_with_usage(tmp_path, [40, 35, 31, 29, 2, 0.1])
    housekeeping(store, 30)
    ages = sorted(round((time.time() - r.created_at) / DAY) for r in store.list_usage(user_id).records)
    assert ages == [0, 2, 29]
    housekeeping(store, 0)  # 0 keeps everything
    assert store.list_usage(user_id).total == 3


def test_a_round_with_nothing_due_reads_almost_nothing(tmp_path):
    store, _ = _store_with_usage(tmp_path, [1.0] * 5_000)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store._conn().set_progress_handler(count, 100)  # one tick per 100 virtual-machine steps
    assert store.prune_usage(time.time() - 30 * DAY) == 0
    assert steps[0] < 10  # a scan of the 5 000 records would take hundreds of ticks
    steps[0] = 0
    assert store.prune_usage(time.time()) == 5_000  # all due: all go
    assert steps[0] > 10
