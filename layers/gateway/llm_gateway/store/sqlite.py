"""SQLite adapter: the embedded store for one machine.

WAL mode with `BEGIN IMMEDIATE` transactions: every write step takes the database's write lock for
its whole read-check-write, so concurrent requests in one process (threads) and in many processes
sharing the file see each step as atomic. One connection per thread; `busy_timeout` makes a writer of
another process wait for the lock instead of failing, for at most LOCK_WAIT_S. Within a process the
writers queue on a Python lock first: SQLite's busy handler waits by sleeping and polling, which
under a dozen contending threads costs far more than the writes themselves.

Group commit (`group`): the server hands the writes that arrive in one turn of its event loop
(admissions and settlements of concurrent requests) to one transaction, each call in a savepoint of
its own, so each stays atomic and exactly-once while they share one commit.

A database the store creates has 1 KiB pages (PAGE_SIZE): the pages a commit writes to the WAL are
the cost of a charged request's two commits, and its rows are small.

Checkpoints (copying the WAL back into the database file) are kept off the event loop: a checkpoint's
fsync takes milliseconds, and SQLite's automatic one runs inside whichever commit crosses 1 000 WAL
pages, so on the loop it would stall every request the worker carries. The loop's connection turns
it off and a thread of this store checkpoints instead (`_Checkpointer`).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .base import (
    CACHE_MAX_AGE,
    CACHE_MAX_BYTES,
    FINAL_RANK,
    KEY_FIELDS,
    RESPONSE_TTL,
    TASK_FIELDS,
    TASK_RANKS,
    USER_FIELDS,
    Admission,
    AlreadyExists,
    CachedAnswer,
    Counter,
    Key,
    KeyCapReached,
    NotFound,
    RateState,
    StoreBusy,
    StoredResponse,
    TaskRecord,
    UsageGroup,
    UsagePage,
    UsageRecord,
    UsageSummary,
    User,
    WouldWait,
    check_fields,
    check_usage_group,
    summary_of,
    tightest,
)
from .cursor import UsageQuery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    balance INTEGER NOT NULL,
    membership_expire_at REAL,
    created_at REAL NOT NULL,
    key_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    remark TEXT NOT NULL DEFAULT '',
    permissions TEXT NOT NULL DEFAULT '[]',
    rpm INTEGER,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    used_at REAL,
    expired_at REAL,
    used_times INTEGER NOT NULL DEFAULT 0,
    used_fee INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    max_fee INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_user ON keys(user_id, created_at);
CREATE TABLE IF NOT EXISTS counters (
    counter_id TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    hits INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    units TEXT NOT NULL DEFAULT '{}',
    channel TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS usage_by_user ON usage(user_id, created_at);
CREATE TABLE IF NOT EXISTS catalog (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS search_cache (
    cache_key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS search_cache_by_age ON search_cache(stored_at);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    progress INTEGER NOT NULL,
    fields TEXT NOT NULL,
    UNIQUE (provider, upstream_id)
);
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks(user_id, task_id);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks(task_id) WHERE rank < 3;
CREATE TABLE IF NOT EXISTS responses (
    response_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at REAL NOT NULL,
    document TEXT
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses(created_at);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parked_settlements (
    request_id TEXT PRIMARY KEY,
    parked_at REAL NOT NULL,
    record TEXT NOT NULL
);
"""


class _Checkpointer:
    """A daemon thread with its own connection that checkpoints the WAL when told enough commits
    were made on a connection that does not checkpoint itself (see CHECKPOINT_EVERY)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._commits = 0
        self._due = threading.Event()
        self._stopping = False
        self.restarting = False  # waiting for the write lock to restart the WAL: the loop's writes step aside
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._due.set()

    def stop(self, wait: bool = True) -> None:
        self._stopping = True
        self._due.set()
        if wait:
            self._thread.join(timeout=LOCK_WAIT_S)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=RESTART_WAIT_S, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    _, wal_frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_frames >= WAL_RESTART_FRAMES:
                        self.restarting = True  # the loop's writes step aside until it has the lock
                        try:
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        finally:
                            self.restarting = False
                except sqlite3.Error:
                    pass  # a checkpoint is an optimisation; the next one, or any connection's, catches up
        finally:
            conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or (
        "locked" in str(exc) or "busy" in str(exc))


def path_from_url(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db` -> a filesystem path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url}")
    rest = url[len("sqlite:///"):]
    return rest if rest.startswith("/") or rest == ":memory:" else os.path.join(os.getcwd(), rest)


# The longest a write waits for another process's write lock before it fails (and is retried or
# refused): long enough for any burst of the gateway's short transactions, short enough to be bounded.
LOCK_WAIT_S = 10.0

# Checkpoints for the event loop's connection: a passive one (beside the writes; it never blocks
# them) every CHECKPOINT_EVERY of its commits. A passive checkpoint cannot restart the WAL while
# writes keep arriving, so once the WAL holds WAL_RESTART_FRAMES pages a restarting one takes the
# write lock for as long as it takes to copy the last pages and sync: a few ms, every few hundred
# requests under continuous load, during which the loop's writes retry and then wait on a thread,
# as for any lock, while the loop serves everything else. The loop's writes step aside while it
# waits for the lock (back to back, they would never leave it free); it waits at most
# RESTART_WAIT_S for other writers and readers, and past that is tried again at the next round.
CHECKPOINT_EVERY = 100
WAL_RESTART_FRAMES = 4000
RESTART_WAIT_S = 0.02

# The page size of a database this store creates. Every commit writes each page it changed whole into
# the WAL, with a checksum over it, and a charged request commits about eight pages (its counter,
# user, key and usage record pages). In a worker that sleeps between requests those pages are cold:
# at 4 KiB the two commits of a sequential request took 55 µs, at 1 KiB 36 µs (SQLite's default
# before 3.12). Rows here are a few hundred bytes; a stored document of hundreds of KiB takes ~1.6×
# as long to write and read in pages this size, and such documents are rare.
PAGE_SIZE = 1024

T = TypeVar("T")


class SQLiteStore:
    def __init__(self, url_or_path: str) -> None:
        self.path = path_from_url(url_or_path) if url_or_path.startswith("sqlite:") else url_or_path
        self._local = threading.local()
        self._initialised = False
        self._writer = threading.Lock()  # one writer at a time in this process
        self._checkpointer: _Checkpointer | None = None

    # connection handling -------------------------------------------------------------------
    def attempt(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn`, one of this store's calls, here and now unless it would wait for a lock; then
        raise WouldWait, having done nothing. The server runs store calls through this on its event
        loop: an uncontended SQLite call takes tens of microseconds, far less than handing it to a
        thread, and only a call that would wait is handed to one."""
        self._local.now_only = True
        try:
            return fn(*args, **kwargs)
        finally:
            self._local.now_only = False

    def waiting_allowed(self) -> bool:
        """False for a call made through `attempt`, and for one inside a group commit even on a
        thread: a retry's sleep there would hold the whole group's transaction, and the lock, while
        it slept; such a call comes back as "again" and is retried on its own."""
        local = self._local
        return not (getattr(local, "now_only", False) or getattr(local, "grouped", False))

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        now_only = getattr(local, "now_only", False)
        conn = getattr(local, "now_conn" if now_only else "conn", None)
        if conn is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            wait = 0.0 if now_only else LOCK_WAIT_S  # a call that must not wait is told at once
            conn = sqlite3.connect(self.path, timeout=wait, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new database only; an existing one keeps its own
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            if now_only:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread does it
                if self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self.path)
                    weakref.finalize(self, self._checkpointer.stop, False)  # a store dropped unclosed
            setattr(local, "now_conn" if now_only else "conn", conn)
        return conn

    def _take_writer(self, now_only: bool) -> None:
        """This process's write lock; a call that must not wait raises WouldWait if it is taken, or
        while the checkpointer waits for SQLite's lock to restart the WAL (the loop's writes, back to
        back, would never leave it free)."""
        if now_only:
            if (self._checkpointer is not None and self._checkpointer.restarting) or not self._writer.acquire(
                    blocking=False):
                raise WouldWait
        else:
            self._writer.acquire()

    def _committed(self, on_loop: bool) -> None:
        if on_loop and self._checkpointer is not None:
            self._checkpointer.committed()

    def group(self, calls: list[Callable[[], Any]], *, wait: bool = False) -> list[tuple[str, Any]]:
        """Group commit: run `calls` (each one of this store's calls, or a function making them) in
        ONE write transaction, each in a savepoint of its own, so each stays atomic: a call that
        raises leaves nothing behind and the others are unaffected. One commit instead of one per
        call: the commit (its WAL write and lock hand-over) is most of a short write's cost.

        Returns, per call, ("ok", result), ("error", exception) or ("again", None): a call that
        would have waited or retried, to be run again on its own. Without `wait` (on the event loop)
        it raises WouldWait, having done nothing, if the write lock is taken; with `wait` (on a
        thread) it waits for the lock as a single call does. Whatever the commit raises, it raises
        having done nothing."""
        local = self._local
        local.now_only = not wait
        try:
            self._take_writer(now_only=not wait)
            try:
                conn = self._conn()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        raise
                    if not wait:
                        raise WouldWait from None
                    raise StoreBusy(f"the database stayed locked for {LOCK_WAIT_S:g} s") from None
                out: list[tuple[str, Any]] = []
                local.grouped = True
                try:
                    for call in calls:
                        try:
                            out.append(("ok", call()))
                        except WouldWait:
                            out.append(("again", None))
                        except Exception as exc:  # noqa: BLE001 - the caller's own error, delivered to it
                            out.append(("error", exc))
                    conn.execute("COMMIT")
                    self._committed(not wait)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    local.grouped = False
                return out
            finally:
                self._writer.release()
        finally:
            local.now_only = False

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement (within a group
        commit, a savepoint of the group's transaction)."""
        if getattr(self._local, "grouped", False):
            conn = self._conn()
            conn.execute("SAVEPOINT call")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                raise
            conn.execute("RELEASE call")
            return
        conn = self._conn()
        now_only = getattr(self._local, "now_only", False)
        self._take_writer(now_only)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
                self._committed(now_only)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
                    if now_only:
                        raise WouldWait from None  # another process holds the database: nothing was done
                    raise StoreBusy(f"the database stayed locked for {LOCK_WAIT_S:g} s") from None
                raise
        finally:
            self._writer.release()

    def init(self) -> None:
        if sqlite3.sqlite_version_info < (3, 35):
            raise RuntimeError(
                f"the SQLite store needs SQLite 3.35 or newer (this Python has {sqlite3.sqlite_version})"
            )
        self._conn().executescript(_SCHEMA)
        added = {"units": "TEXT NOT NULL DEFAULT '{}'", "channel": "TEXT NOT NULL DEFAULT ''",
                 "attempts": "INTEGER NOT NULL DEFAULT 1"}
        if not set(added) <= _columns(self._conn(), "usage"):
            with self._tx() as c:  # a database made before a column existed gets it, once, under the lock
                for column, kind in added.items():
                    if column not in _columns(c, "usage"):
                        c.execute(f"ALTER TABLE usage ADD COLUMN {column} {kind}")
        self._initialised = True

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for name in ("conn", "now_conn"):
            conn = getattr(self._local, name, None)
            if conn is not None:
                conn.close()
                setattr(self._local, name, None)

    # users ---------------------------------------------------------------------------------
    def create_user(self, user: User) -> User:
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT INTO users (user_id, tier, balance, membership_expire_at, created_at, key_count)"
                    " VALUES (?, ?, ?, ?, ?, 0)",
                    (user.user_id, user.tier, user.balance, user.membership_expire_at, user.created_at),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user {user.user_id} exists") from None
        return self.get_user(user.user_id)  # type: ignore[return-value]

    def get_user(self, user_id: str) -> User | None:
        row = self._conn().execute("SELECT * FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return User(**dict(row)) if row else None

    def update_user(self, user_id: str, **fields: Any) -> User:
        check_fields(fields, USER_FIELDS)
        with self._tx() as c:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                cur = c.execute(f"UPDATE users SET {sets} WHERE user_id = ?", (*fields.values(), user_id))
                if cur.rowcount == 0:
                    raise NotFound(f"no user {user_id}")
        user = self.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        return user

    def add_balance(self, user_id: str, micros: int) -> User:
        with self._tx() as c:
            cur = c.execute("UPDATE users SET balance = balance + ? WHERE user_id = ?", (micros, user_id))
            if cur.rowcount == 0:
                raise NotFound(f"no user {user_id}")
        return self.get_user(user_id)  # type: ignore[return-value]

    def count_users(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def list_users(self) -> list[User]:
        return [User(**dict(row)) for row in self._conn().execute("SELECT * FROM users ORDER BY user_id")]

    # keys ----------------------------------------------------------------------------------
    def create_key(self, key: Key, max_keys: int | None = None) -> Key:
        with self._tx() as c:
            row = c.execute("SELECT key_count FROM users WHERE user_id = ?", (key.user_id,)).fetchone()
            if row is None:
                raise NotFound(f"no user {key.user_id}")
            if max_keys is not None and row[0] >= max_keys:
                raise KeyCapReached(f"user {key.user_id} already holds {row[0]} keys")
            try:
                c.execute(
                    "INSERT INTO keys (key_id, key_hash, user_id, key_hint, remark, permissions, rpm, is_admin,"
                    " is_disabled, created_at, used_at, expired_at, used_times, used_fee, held, max_fee)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?)",
                    (
                        key.key_id, key.key_hash, key.user_id, key.key_hint, key.remark,
                        json.dumps(key.permissions), key.rpm, int(key.is_admin), int(key.is_disabled),
                        key.created_at, key.used_at, key.expired_at, key.max_fee,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists("key exists") from None
            c.execute("UPDATE users SET key_count = key_count + 1 WHERE user_id = ?", (key.user_id,))
        return self.get_key(key.key_id)  # type: ignore[return-value]

    def get_key_by_hash(self, key_hash: str) -> Key | None:
        row = self._conn().execute("SELECT * FROM keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return _key(row) if row else None

    def get_key(self, key_id: str) -> Key | None:
        row = self._conn().execute("SELECT * FROM keys WHERE key_id = ?", (key_id,)).fetchone()
        return _key(row) if row else None

    def list_keys(self, user_id: str) -> list[Key]:
        rows = self._conn().execute(
            "SELECT * FROM keys WHERE user_id = ? ORDER BY created_at, key_id", (user_id,)
        ).fetchall()
        return [_key(r) for r in rows]

    def update_key(self, key_id: str, **fields: Any) -> Key:
        check_fields(fields, KEY_FIELDS)
        values = [
            json.dumps(v) if k == "permissions" else int(v) if k in ("is_admin", "is_disabled") else v
            for k, v in fields.items()
        ]
        with self._tx() as c:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                cur = c.execute(f"UPDATE keys SET {sets} WHERE key_id = ?", (*values, key_id))
                if cur.rowcount == 0:
                    raise NotFound(f"no key {key_id}")
        key = self.get_key(key_id)
        if key is None:
            raise NotFound(f"no key {key_id}")
        return key

    def delete_key(self, key_id: str) -> None:
        with self._tx() as c:
            row = c.execute("SELECT user_id FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFound(f"no key {key_id}")
            c.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
            c.execute("UPDATE users SET key_count = key_count - 1 WHERE user_id = ?", (row[0],))

    # admission and billing -----------------------------------------------------------------
    def admit(
        self,
        user_id: str,
        key_id: str | None,
        counters: list[Counter],
        reserve: int,
        now: float,
    ) -> Admission:
        """Each step writes optimistically and checks what it wrote; a refusal rolls the whole
        transaction back, so a refused request neither counts against a limit nor holds money."""
        states = []
        try:
            with self._tx() as c:
                for counter in counters:
                    start, hits = c.execute(_HIT, (counter.counter_id, now, counter.window)).fetchone()
                    if hits > counter.limit:
                        retry = max(1, math.ceil(start + counter.window - now))
                        raise _Refused(Admission(False, "rate", retry, counter.counter_id))
                    states.append(RateState(counter.limit, counter.limit - hits, start + counter.window))
                if reserve > 0:
                    taken = c.execute(
                        "UPDATE users SET balance = balance - ? WHERE user_id = ? AND balance >= ?",
                        (reserve, user_id, reserve),
                    ).rowcount
                    if not taken:
                        raise _Refused(Admission(False, "funds_user"))
                    if key_id is not None:
                        held = c.execute(
                            "UPDATE keys SET held = held + ? WHERE key_id = ?"
                            " AND (max_fee IS NULL OR max_fee - used_fee - held >= ?)",
                            (reserve, key_id, reserve),
                        ).rowcount
                        if not held and c.execute("SELECT 1 FROM keys WHERE key_id = ?", (key_id,)).fetchone():
                            raise _Refused(Admission(False, "funds_key"))
        except _Refused as refused:
            return refused.admission
        return Admission(True, rate=tightest(states))

    def settle(self, record: UsageRecord) -> bool:
        r = record
        with self._tx() as c:
            try:
                c.execute(
                    "INSERT INTO usage (request_id, user_id, key_id, model, route, created_at, input_tokens,"
                    " output_tokens, cache_read_tokens, cache_write_tokens, cost, reserved, latency_ms, status,"
                    " units, channel, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.request_id, r.user_id, r.key_id, r.model, r.route, r.created_at, r.input_tokens,
                        r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.cost, r.reserved,
                        r.latency_ms, r.status, json.dumps(r.units) if r.units else "{}", r.channel, r.attempts,
                    ),
                )
            except sqlite3.IntegrityError:
                return False
            c.execute(
                "UPDATE users SET balance = balance + ? - ? WHERE user_id = ?", (r.reserved, r.cost, r.user_id)
            )
            c.execute(
                "UPDATE keys SET held = held - ?, used_fee = used_fee + ?, used_times = used_times + 1,"
                " used_at = ? WHERE key_id = ?",
                (r.reserved, r.cost, r.created_at, r.key_id),
            )
        return True

    def park_settlement(self, record: UsageRecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO parked_settlements (request_id, parked_at, record) VALUES (?, ?, ?)",
                (record.request_id, time.time(), json.dumps(record.as_dict())),
            )

    def parked_settlements(self, limit: int = 100) -> list[UsageRecord]:
        rows = self._conn().execute(
            "SELECT record FROM parked_settlements ORDER BY parked_at LIMIT ?", (limit,)
        ).fetchall()
        return [UsageRecord(**json.loads(row["record"])) for row in rows]

    def unpark_settlement(self, request_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM parked_settlements WHERE request_id = ?", (request_id,))

    def prune_usage(self, before: float) -> int:
        """Delete usage records made before `before` (the retention setting); their settlement
        guards go with them, which is safe: a replay comes within a request's lifetime.

        Runs every few seconds under `serve`, so it reads only the records it deletes: records are
        stored in the order they are settled, which is their time order, so the first record new
        enough to keep bounds the ones to delete (no index on time, no scan of the whole table). A
        record settled late with an older time (a parked settlement) goes once that bound passes it."""
        with self._tx() as c:
            kept = c.execute("SELECT rowid FROM usage WHERE created_at >= ? ORDER BY rowid LIMIT 1",
                             (before,)).fetchone()
            if kept is None:
                return c.execute("DELETE FROM usage WHERE created_at < ?", (before,)).rowcount
            return c.execute("DELETE FROM usage WHERE rowid < ? AND created_at < ?", (kept[0], before)).rowcount

    def list_usage(
        self,
        user_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        offset: int = 0,
        limit: int = 20,
        cursor: str | None = None,
        with_totals: bool = True,
    ) -> UsagePage:
        q = UsageQuery(user_id, since, until, model, offset, limit, cursor)
        clause, args = _usage_range(user_id, since, until, q.model)
        conn = self._conn()
        totals = None
        if with_totals:
            totals = tuple(conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(cost), 0), COALESCE(SUM(input_tokens + cache_read_tokens"
                f" + cache_write_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM usage WHERE {clause}",
                args,
            ).fetchone())
        if q.start_after is not None:
            clause += " AND (created_at, request_id) < (?, ?)"
            args.extend(q.start_after)
        rows = conn.execute(
            f"SELECT * FROM usage WHERE {clause} ORDER BY created_at DESC, request_id DESC LIMIT ? OFFSET ?",
            (*args, q.want, offset),
        ).fetchall()
        return q.page([_usage(r) for r in rows], totals)

    def summarise_usage(
        self,
        user_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        group: str = "day",
    ) -> UsageSummary:
        check_usage_group(group)
        clause, args = _usage_range(user_id, since, until, model or None)
        # the UTC day from whole days since the epoch, so a time just before midnight stays on its day
        key = "date(CAST(created_at / 86400 AS INTEGER) * 86400, 'unixepoch')" if group == "day" else "model"
        rows = self._conn().execute(
            f"SELECT {key} AS k, COUNT(*), SUM(input_tokens + cache_read_tokens + cache_write_tokens),"
            f" SUM(output_tokens), SUM(cost) FROM usage WHERE {clause} GROUP BY k ORDER BY k",
            args,
        ).fetchall()
        return summary_of([UsageGroup(*row) for row in rows])

    # search answer cache -------------------------------------------------------------------
    def get_cached(self, cache_key: str) -> CachedAnswer | None:
        row = self._conn().execute(
            "SELECT answer, stored_at FROM search_cache WHERE cache_key = ?", (cache_key,)
        ).fetchone()
        if row is None or row[1] + CACHE_MAX_AGE <= time.time():
            return None
        return CachedAnswer(row[0], row[1])

    def put_cached(self, cache_key: str, answer: str, stored_at: float) -> bool:
        if len(answer.encode()) > CACHE_MAX_BYTES:
            return False
        with self._tx() as c:
            c.execute(
                "INSERT INTO search_cache (cache_key, answer, stored_at) VALUES (?, ?, ?)"
                " ON CONFLICT(cache_key) DO UPDATE SET answer = excluded.answer, stored_at = excluded.stored_at",
                (cache_key, answer, stored_at),
            )
            # what a TTL does on DynamoDB: entries no request may use any more go
            c.execute("DELETE FROM search_cache WHERE stored_at < ?", (time.time() - CACHE_MAX_AGE,))
        return True

    # asynchronous tasks --------------------------------------------------------------------
    # A task is one row: the columns its reads and its conditional write look at, the rest as JSON.
    def next_task_id(self) -> int:
        with self._tx() as c:
            return c.execute(
                "INSERT INTO meta (name, value) VALUES ('task_id', 1)"
                " ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()[0]

    def create_task(self, task: TaskRecord) -> None:
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT INTO tasks (task_id, user_id, provider, upstream_id, rank, progress, fields)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (task.task_id, task.user_id, task.provider, task.upstream_id, task.rank, task.progress,
                     json.dumps(task.__dict__)),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"task {task.task_id} exists") from None

    def get_task(self, user_id: str, task_id: int) -> TaskRecord | None:
        row = self._conn().execute(
            "SELECT fields FROM tasks WHERE task_id = ? AND user_id = ?", (task_id, user_id)).fetchone()
        return TaskRecord(**json.loads(row[0])) if row else None

    def find_task(self, provider: str, upstream_id: str) -> TaskRecord | None:
        row = self._conn().execute(
            "SELECT fields FROM tasks WHERE provider = ? AND upstream_id = ?", (provider, upstream_id)).fetchone()
        return TaskRecord(**json.loads(row[0])) if row else None

    def list_tasks(self, user_id: str, *, offset: int = 0, limit: int = 10) -> tuple[int, list[TaskRecord]]:
        conn = self._conn()
        total = conn.execute("SELECT COUNT(*) FROM tasks WHERE user_id = ?", (user_id,)).fetchone()[0]
        rows = conn.execute(
            "SELECT fields FROM tasks WHERE user_id = ? ORDER BY task_id DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset)).fetchall()
        return total, [TaskRecord(**json.loads(r[0])) for r in rows]

    def advance_task(self, user_id: str, task_id: int, status: str, progress: int,
                     changes: dict[str, Any]) -> TaskRecord | None:
        check_fields(changes, TASK_FIELDS)
        rank = TASK_RANKS[status]
        patch = {**changes, "status": status, "progress": progress}
        with self._tx() as c:
            # The condition and the write are one statement: a late update that lost a race finds the
            # row already past it and changes nothing.
            row = c.execute(
                "UPDATE tasks SET rank = ?, progress = ?, fields = json_patch(fields, ?)"
                " WHERE task_id = ? AND user_id = ? AND rank < ? AND (rank < ? OR (rank = ? AND progress < ?))"
                " RETURNING fields",
                (rank, progress, json.dumps(patch), task_id, user_id, FINAL_RANK, rank, rank, progress)).fetchone()
        return TaskRecord(**json.loads(row[0])) if row else None

    def set_task_file(self, user_id: str, task_id: int, file_id: str) -> None:
        with self._tx() as c:
            if not c.execute("UPDATE tasks SET fields = json_set(fields, '$.file_id', ?)"
                             " WHERE task_id = ? AND user_id = ?", (file_id, task_id, user_id)).rowcount:
                raise NotFound(f"no task {task_id}")

    def open_tasks(self, limit: int = 100) -> list[TaskRecord]:
        # the rank as a literal, so the partial index tasks_open (rank < 3) serves the query
        rows = self._conn().execute(
            f"SELECT fields FROM tasks WHERE rank < {FINAL_RANK} ORDER BY task_id LIMIT ?", (limit,)).fetchall()
        return [TaskRecord(**json.loads(r[0])) for r in rows]

    # responses -----------------------------------------------------------------------------
    def put_response(self, record: StoredResponse) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO responses (response_id, user_id, model, created_at, document) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(response_id) DO UPDATE SET user_id = excluded.user_id, model = excluded.model,"
                " created_at = excluded.created_at, document = excluded.document",
                (record.response_id, record.user_id, record.model, record.created_at, record.document),
            )
            # what a TTL does on DynamoDB: responses past their 30 days go
            c.execute("DELETE FROM responses WHERE created_at < ?", (time.time() - RESPONSE_TTL,))

    def get_response(self, response_id: str) -> StoredResponse | None:
        row = self._conn().execute(
            "SELECT user_id, model, created_at, document FROM responses WHERE response_id = ?", (response_id,)
        ).fetchone()
        if row is None or row[2] + RESPONSE_TTL <= time.time():
            return None
        return StoredResponse(response_id, row[0], row[1], row[2], row[3])

    def delete_response(self, response_id: str) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM responses WHERE response_id = ?", (response_id,)).rowcount > 0

    # catalog overrides ---------------------------------------------------------------------
    def catalog_version(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE name = 'catalog_version'").fetchone()
        return row[0] if row else 0

    def get_catalog_overrides(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {"models": {}, "tiers": {}}
        for kind, name, fields in self._conn().execute(
            "SELECT kind, name, fields FROM catalog WHERE kind IN ('models', 'tiers')"
        ):
            out[kind][name] = json.loads(fields)
        return out

    def _set_override(self, kind: str, name: str, fields: dict[str, Any], exists: bool | None = None) -> None:
        with self._tx() as c:
            row = c.execute("SELECT fields FROM catalog WHERE kind = ? AND name = ?", (kind, name)).fetchone()
            if exists is False and row:
                raise AlreadyExists(f"{kind} {name} exists")
            if exists and not row:
                raise NotFound(f"no {kind} {name}")
            merged = {**(json.loads(row[0]) if row else {}), **fields}
            c.execute(
                "INSERT INTO catalog (kind, name, fields) VALUES (?, ?, ?)"
                " ON CONFLICT(kind, name) DO UPDATE SET fields = excluded.fields",
                (kind, name, json.dumps(merged)),
            )
            _bump_catalog_version(c)

    def set_model_override(self, model: str, fields: dict[str, Any]) -> None:
        self._set_override("models", model, fields)

    def delete_model_override(self, model: str) -> None:
        with self._tx() as c:
            if not c.execute("DELETE FROM catalog WHERE kind = 'models' AND name = ?", (model,)).rowcount:
                raise NotFound(f"no override of model {model}")
            _bump_catalog_version(c)

    def set_tier_override(self, tier: str, fields: dict[str, Any]) -> None:
        self._set_override("tiers", tier, fields)

    def list_channels(self) -> dict[str, dict[str, Any]]:
        rows = self._conn().execute("SELECT name, fields FROM catalog WHERE kind = 'channels'")
        return {name: json.loads(fields) for name, fields in rows}

    def put_channel(self, name: str, fields: dict[str, Any], *, exists: bool | None = None) -> None:
        self._set_override("channels", name, fields, exists)

    def delete_channel(self, name: str) -> None:
        with self._tx() as c:
            if not c.execute("DELETE FROM catalog WHERE kind = 'channels' AND name = ?", (name,)).rowcount:
                raise NotFound(f"no channel {name}")
            _bump_catalog_version(c)


def _bump_catalog_version(c: sqlite3.Connection) -> None:
    """Inside a write transaction: one more catalog change, which running servers poll for."""
    c.execute(
        "INSERT INTO meta (name, value) VALUES ('catalog_version', 1)"
        " ON CONFLICT(name) DO UPDATE SET value = value + 1"
    )


# One rate-limit hit: open a window at `now`, or count one more in the open one; the caller compares
# the returned count with the limit. (RETURNING needs SQLite 3.35, checked in init.)
_HIT = (
    "INSERT INTO counters (counter_id, window_start, hits) VALUES (?1, ?2, 1)"
    " ON CONFLICT(counter_id) DO UPDATE SET"
    " window_start = CASE WHEN ?2 >= window_start + ?3 THEN ?2 ELSE window_start END,"
    " hits = CASE WHEN ?2 >= window_start + ?3 THEN 1 ELSE hits + 1 END"
    " RETURNING window_start, hits"
)


class _Refused(Exception):
    def __init__(self, admission: Admission) -> None:
        self.admission = admission


def _columns(c: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in c.execute(f"PRAGMA table_info({table})")}


def _usage_range(user_id: str, since: float | None, until: float | None, model: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of a user's usage in [since, until), of one model or all."""
    where = ["user_id = ?"]
    args: list[Any] = [user_id]
    if since is not None:
        where.append("created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("created_at < ?")
        args.append(until)
    if model:
        where.append("model = ?")
        args.append(model)
    return " AND ".join(where), args


def _usage(row: sqlite3.Row) -> UsageRecord:
    d = dict(row)
    d["units"] = json.loads(d.get("units") or "{}")
    return UsageRecord(**d)


def _key(row: sqlite3.Row) -> Key:
    d = dict(row)
    d["permissions"] = json.loads(d["permissions"])
    d["is_admin"] = bool(d["is_admin"])
    d["is_disabled"] = bool(d["is_disabled"])
    return Key(**d)
