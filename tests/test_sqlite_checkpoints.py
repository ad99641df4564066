"""Checkpoints of the SQLite store's WAL happen on a thread of the store, never inside a commit made on
the event loop (a checkpoint syncs the database file: milliseconds during which a worker's loop would
serve no one), and the WAL stays bounded under writes that never pause."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from llm_gateway.store import open_store
from llm_gateway.store import sqlite as sqlite_store
from llm_gateway.store.base import Counter, WouldWait
from tests.contract.test_store_contract import NOW, make_key, make_user, record


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    s.init()
    yield s
    s.close()


def on_loop(store, fn, *args):
    """A store call as the server's event loop makes it: now, or retried shortly if it would wait."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return store.attempt(fn, *args)
        except WouldWait:
            assert time.monotonic() < deadline, "the write lock stayed taken"
            time.sleep(0.0003)


def write_requests(store, n):
    """`n` requests' writes (an admission, then a settlement), as the loop makes them, one after the
    other without a pause."""
    user_id = make_user(store, balance=10**12)
    key = make_key(store, user_id)
    counters = [Counter("rpm:" + user_id, limit=10**9)]
    for _ in range(n):
        assert on_loop(store, store.admit, user_id, key.key_id, counters, 100, NOW).ok
        assert on_loop(store, store.settle, record(user_id, key.key_id, reserved=100, cost=40)) is True
    return user_id


def wal_frames(path):
    """Frames in the WAL file (its size is its high-water mark: SQLite reuses it from the start)."""
    size = os.path.getsize(path + "-wal")
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    return (size - 32) // (page + 24) if size else 0


def test_commits_on_the_loop_never_checkpoint_and_leave_it_to_the_store_thread(store, monkeypatch):
    told = []
    monkeypatch.setattr(sqlite_store._Checkpointer, "committed", lambda self: told.append(1))
    write_requests(store, 700)  # 1 400 commits: SQLite's own checkpoint would run every 1 000 pages
    assert len(told) == 1_400  # each commit made on the loop told the checkpointer
    other = sqlite3.connect(store.path)
    _, frames, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    other.close()
    assert frames > 2_000  # nothing was copied back during the commits: the WAL only grew


def test_the_wal_stays_bounded_under_writes_that_never_pause(store, monkeypatch):
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 4)
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 40)
    user_id = write_requests(store, 3_000)
    # Unchecked, the WAL would hold ~20 000 frames; with passive checkpoints alone (which cannot restart
    # it while writes keep coming) 2 000 requests left 2 700 to 8 500. It may outgrow the restart
    # threshold by what is written while a passive checkpoint syncs and the restart waits its turn
    # (500 to 1 900 frames here, where writes come back to back).
    assert wal_frames(store.path) < 3_000
    assert store.get_user(user_id).balance == 10**12 - 3_000 * 40
    assert store.list_usage(user_id).total == 3_000


def test_closing_the_store_stops_its_checkpoint_thread(store):
    write_requests(store, 3)
    thread = store._checkpointer._thread
    assert thread.is_alive()
    store.close()
    assert not thread.is_alive() and store._checkpointer is None


def test_a_restart_that_cannot_proceed_holds_this_process_s_writes_back_only_briefly(store, monkeypatch):
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 4)
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 40)
    write_requests(store, 50)
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM usage").fetchone()  # another process reading an old snapshot
    try:
        slowest, until = 0.0, time.monotonic() + 1.0
        while time.monotonic() < until:  # every restart waits for that reader, and gives up
            started = time.monotonic()
            write_requests(store, 1)
            slowest = max(slowest, time.monotonic() - started)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert slowest < 0.3, slowest


def test_a_store_dropped_without_closing_stops_its_checkpoint_thread(tmp_path):
    import gc

    dropped = open_store(f"sqlite:///{tmp_path / 'dropped.db'}")
    dropped.init()
    write_requests(dropped, 3)
    thread = dropped._checkpointer._thread
    del dropped
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
