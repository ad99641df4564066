"""The SQLite store's file: a database it creates has small pages (the pages each commit writes to
the WAL are most of a charged request's store cost); a database made before keeps its own."""

from __future__ import annotations

import sqlite3
import time

from llm_gateway.store.base import Counter, UsageRecord
from llm_gateway.store.sqlite import SQLiteStore
from tests.contract.test_store_contract import NOW, make_key, make_user


def _page_size(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def _charge_once(store: SQLiteStore) -> int:
    """One admitted and settled request; the user's balance after it."""
    user_id = make_user(store, balance=1_000)
    key = make_key(store, user_id)
    assert store.admit(user_id, key.key_id, [Counter(f"model:{user_id}", 10)], 300, NOW).ok
    assert store.settle(UsageRecord(request_id=f"req_{time.time_ns():032x}", user_id=user_id, key_id=key.key_id,
                                    model="m", created_at=NOW, input_tokens=1, output_tokens=1, cost=120,
                                    reserved=300))
    return store.get_user(user_id).balance


def test_a_database_the_store_creates_has_small_pages(tmp_path):
    store = SQLiteStore(str(tmp_path / "new.db"))
    store.init()
    assert _charge_once(store) == 880
    store.close()
    assert _page_size(tmp_path / "new.db") == 1024


def test_a_database_made_before_keeps_its_page_size_and_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # as an earlier version made it: SQLite's default pages, in WAL mode
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    old.execute("INSERT INTO meta VALUES ('kept', 7)")
    old.commit()
    old.close()
    store = SQLiteStore(str(path))
    store.init()
    assert _charge_once(store) == 880
    store.close()
    assert _page_size(path) == 4096
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE name = 'kept'").fetchone() == (7,)
    conn.close()
