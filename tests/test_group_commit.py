"""Group commit on the SQLite store: the writes that arrive in one turn of a worker's event loop
share one transaction (store `group`, runtime `Blocking.finish`), each still atomic, each applied
exactly once, with the results each would have had alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
import uvloop

from llm_gateway.runtime import Blocking
from llm_gateway.store import open_store
from llm_gateway.store.base import Counter, WouldWait
from tests.contract.test_store_contract import NOW, in_threads, make_key, make_user, record


@pytest.fixture
def store(tmp_path):
    """An SQLite store (the only one with group commit); other processes open its `path`."""
    s = open_store(f"sqlite:///{tmp_path / 'group.db'}")
    s.init()
    return s


def test_a_group_gives_each_call_the_result_it_would_have_alone(store):
    user_id = make_user(store, balance=1_000)
    key = make_key(store, user_id)
    counter = Counter("rpm:" + user_id, limit=5)
    outcomes = store.group([lambda: store.admit(user_id, key.key_id, [counter], 300, NOW) for _ in range(6)])
    assert [kind for kind, _ in outcomes] == ["ok"] * 6
    admitted = [value for _, value in outcomes]
    # 3 reservations fit the balance; the others find no funds, and so count nothing
    assert [a.ok for a in admitted] == [True, True, True, False, False, False]
    assert {a.refused for a in admitted[3:]} == {"funds_user"}
    assert store.get_user(user_id).balance == 100
    assert store.get_key(key.key_id).held == 900
    rest = store.group([lambda: store.admit(user_id, None, [counter], 0, NOW) for _ in range(3)])
    assert [value.refused for _, value in rest] == [None, None, "rate"]


def test_a_transaction_that_fails_in_a_group_leaves_nothing_and_the_others_stand(store):
    user_id = make_user(store, balance=10_000)
    key = make_key(store, user_id)
    first, second = (record(user_id, key.key_id, reserved=0, cost=100) for _ in range(2))

    def fails_midway():
        with store._tx() as c:  # a write, then a fault inside the same transaction
            c.execute("UPDATE users SET balance = balance + 5000 WHERE user_id = ?", (user_id,))
            raise ValueError("the caller's own fault")

    outcomes = store.group([lambda: store.settle(first), fails_midway, lambda: store.settle(second)])
    assert outcomes[0] == ("ok", True) and outcomes[2] == ("ok", True)
    assert outcomes[1][0] == "error" and isinstance(outcomes[1][1], ValueError)
    assert store.get_user(user_id).balance == 10_000 - 200
    assert store.list_usage(user_id).total == 2


def test_a_settlement_repeated_in_a_group_is_applied_once(store):
    user_id = make_user(store, balance=10_000)
    key = make_key(store, user_id)
    once = record(user_id, key.key_id, reserved=0, cost=700)
    outcomes = store.group([lambda: store.settle(once)] * 3)
    assert [value for _, value in outcomes] == [True, False, False]
    assert store.get_user(user_id).balance == 9_300 and store.list_usage(user_id).total == 1


def test_a_group_that_cannot_start_now_does_nothing(store):
    user_id = make_user(store, balance=10_000)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(WouldWait):
            store.group([lambda: store.add_balance(user_id, 5)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.get_user(user_id).balance == 10_000


def test_groups_from_many_processes_admit_exactly_the_limit(store):
    user_id = make_user(store, balance=10**9)
    counter = Counter("rpm:" + user_id, limit=25)

    def one_process(i):
        mine = open_store(f"sqlite:///{store.path}")
        results = []
        for _ in range(4):
            while True:
                try:
                    outcomes = mine.group([lambda: mine.admit(user_id, None, [counter], 10, NOW)] * 3)
                    break
                except WouldWait:
                    time.sleep(0.001)
            results += [value.ok for _, value in outcomes]
        return results

    admitted = sum(sum(r) for r in in_threads(6, one_process))
    assert admitted == 25
    assert store.get_user(user_id).balance == 10**9 - 25 * 10


# --- the event loop's side: Blocking.finish ---------------------------------------------------------

class Spy:
    """The store, counting the groups it commits."""

    def __init__(self, store) -> None:
        self.store = store
        self.groups: list[int] = []

    def group(self, calls):
        self.groups.append(len(calls))
        return self.store.group(calls)


def test_writes_of_one_turn_share_a_commit_and_each_gets_its_own_outcome(store):
    user_id = make_user(store, balance=1_000)
    key = make_key(store, user_id)
    spy = Spy(store)
    blocking = Blocking(4, store.attempt, spy.group)
    blocking.in_flight = 4  # requests being served at once

    def refuse():
        raise LookupError("refused")

    async def main():
        return await asyncio.gather(
            *(blocking.finish(store.admit, user_id, key.key_id, [], 400, NOW) for _ in range(3)),
            blocking.finish(refuse), return_exceptions=True)

    results = asyncio.run(main())
    blocking.shutdown()
    assert spy.groups == [4]
    assert [r.ok for r in results[:3]] == [True, True, False]
    assert isinstance(results[3], LookupError)
    assert store.get_user(user_id).balance == 200


def test_writes_that_cannot_commit_now_are_done_on_threads_once_the_lock_is_free(store):
    user_id = make_user(store, balance=1_000)
    key = make_key(store, user_id)
    blocking = Blocking(4, store.attempt, store.group)
    blocking.in_flight = 5
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: (other.execute("ROLLBACK"), other.close())).start()

    async def main():
        return await asyncio.gather(*(blocking.finish(store.settle, record(user_id, key.key_id, reserved=0, cost=10))
                                      for _ in range(5)))

    assert asyncio.run(main()) == [True] * 5
    blocking.shutdown()
    assert store.get_user(user_id).balance == 950


def test_a_settlement_that_fails_in_a_group_that_waited_for_the_lock_does_not_sleep_in_it(store, monkeypatch):
    """A group that had to wait for the lock runs on a thread, where waiting is allowed; a settlement
    failing inside it must still not sleep before its retry: the sleep would hold the group's
    transaction, and every other writer, for 50 ms and more. It comes back to be done on its own."""
    from llm_gateway.billing import settle as settlement

    user_id = make_user(store, balance=10_000)
    key = make_key(store, user_id)
    first, second = (record(user_id, key.key_id, reserved=0, cost=100) for _ in range(2))
    settle, failed = store.settle, []

    def settles_on_second_try(rec):
        if rec is first and not failed:
            failed.append(rec)
            raise sqlite3.OperationalError("disk I/O error")
        return settle(rec)

    monkeypatch.setattr(store, "settle", settles_on_second_try)
    slept = []
    monkeypatch.setattr(settlement.time, "sleep", slept.append)
    outcomes = store.group([lambda: settlement.write(store, first), lambda: settlement.write(store, second)],
                           wait=True)
    assert outcomes[0] == ("again", None) and outcomes[1] == ("ok", second)
    assert slept == []  # nothing slept while the group held the lock
    assert settlement.write(store, first) is first  # on its own, where it may wait, it is applied
    assert store.get_user(user_id).balance == 10_000 - 200 and store.list_usage(user_id).total == 2


def test_a_commit_that_fails_leaves_each_write_to_be_done_on_its_own(store):
    user_id = make_user(store, balance=1_000)

    def failing_group(calls):
        raise sqlite3.OperationalError("disk I/O error")

    blocking = Blocking(4, store.attempt, failing_group)
    blocking.in_flight = 4

    async def main():
        return await asyncio.gather(*(blocking.finish(store.add_balance, user_id, 1) for _ in range(4)))

    assert len(asyncio.run(main())) == 4
    blocking.shutdown()
    assert store.get_user(user_id).balance == 1_004


def test_a_cancelled_caller_s_write_still_happens_and_is_undone(store):
    user_id = make_user(store, balance=1_000)
    undone = threading.Event()
    blocking = Blocking(4, store.attempt, store.group)
    blocking.in_flight = 5

    def undo(admission):
        store.add_balance(user_id, 300)  # the reservation given back
        undone.set()

    async def main():
        waiter = asyncio.ensure_future(blocking.finish(store.admit, user_id, None, [], 300, NOW, undo=undo))
        other = asyncio.ensure_future(blocking.finish(store.admit, user_id, None, [], 100, NOW))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return await other

    assert asyncio.run(main()).ok
    assert undone.wait(5)
    blocking.shutdown()
    assert store.get_user(user_id).balance == 900


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_writes_that_find_the_lock_taken_for_milliseconds_wait_on_the_loop_whatever_the_loop(store, loop):
    """Another worker's commit holds the database for a few milliseconds: the group is refused,
    and its retries span the wait on serve's own loop too (uvloop, whose timers count whole
    milliseconds), so the writes are never handed to a thread; writes queued meanwhile join it."""
    runner = asyncio.run if loop == "asyncio" else uvloop.run
    user_id = make_user(store, balance=1_000)
    key = make_key(store, user_id)
    groups: list[tuple[int, bool]] = []

    def group(calls, wait=False):
        groups.append((len(calls), wait))
        return store.group(calls, wait=wait)

    blocking = Blocking(4, store.attempt, group)
    blocking.in_flight = 4
    other = sqlite3.connect(store.path, isolation_level=None)

    async def main():
        other.execute("BEGIN IMMEDIATE")

        def settle():
            return asyncio.ensure_future(blocking.finish(store.settle, record(user_id, key.key_id, reserved=0,
                                                                              cost=10)))

        first = [settle(), settle()]
        await asyncio.sleep(0.0015)  # the group has been refused once or more by now
        late = settle()
        await asyncio.sleep(0)  # queued
        asyncio.get_running_loop().call_later(0.003, other.execute, "ROLLBACK")
        return await asyncio.gather(*first, late)

    assert runner(main()) == [True] * 3
    other.close()
    blocking.shutdown()
    assert len(groups) >= 2 and not any(wait for _, wait in groups), groups  # refused, then done on the loop
    assert groups[-1][0] == 3  # the late write joined the waiting group
    assert store.get_user(user_id).balance == 970


def test_a_write_made_while_no_other_request_is_in_flight_is_done_at_once(store):
    """Nobody to share a commit with: no wait for the end of the loop's turn."""
    user_id = make_user(store, balance=1_000)
    spy = Spy(store)
    blocking = Blocking(4, store.attempt, spy.group)
    blocking.in_flight = 1  # this request alone

    async def main():
        pending = asyncio.ensure_future(blocking.finish(store.add_balance, user_id, 5))
        await asyncio.sleep(0)  # one step: the write is done within it
        assert pending.done()
        return pending.result()

    assert asyncio.run(main()).balance == 1_005
    blocking.shutdown()
    assert spy.groups == []
