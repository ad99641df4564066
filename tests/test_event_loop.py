"""The store never stalls the event loop: under `serve` one worker carries many streams, and a slow
store call (a lock wait, a slow DynamoDB round trip) made for one request must not delay another
request's stream on the same worker."""

from __future__ import annotations

import threading
import time

import httpx

from llm_gateway.runtime import Blocking
from tests.conftest import extra_gateway


class SlowForOneUser:
    """The gateway's store, with admission and settlement of one user taking `seconds` each."""

    def __init__(self, store, user_id: str, seconds: float) -> None:
        self._store = store
        self._user_id = user_id
        self._seconds = seconds
        self.slowed = 0

    def admit(self, user_id, *args, **kwargs):
        if user_id == self._user_id:
            self.slowed += 1
            time.sleep(self._seconds)
        return self._store.admit(user_id, *args, **kwargs)

    def settle(self, record):
        if record.user_id == self._user_id:
            self.slowed += 1
            time.sleep(self._seconds)
        return self._store.settle(record)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_slow_store_call_does_not_delay_another_stream_on_the_same_worker(gateway):
    # chunks every 50 ms: a stream that waited on another request's store call would see a gap
    model = gateway.model(behavior={"chunk_delay": 0.05, "text": "tick " * 30})
    slow_user, fast_user = gateway.user(), gateway.user()
    slow_key, fast_key = gateway.key(slow_user), gateway.key(fast_user)
    with extra_gateway(gateway) as gw:
        slowed = SlowForOneUser(gw.store, slow_user, 1.0)
        gw.runtime.store = slowed
        gw.runtime.gate.store = slowed
        gw.runtime.keys._store = slowed
        # a store that cannot tell which calls would wait: every call goes to a thread
        gw.runtime.blocking = Blocking(16)

        arrivals: list[float] = []
        fast_body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        with httpx.stream("POST", gw.base_url + "/chat/completions", json=fast_body,
                          headers={"Authorization": f"Bearer {fast_key}"}, timeout=30) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            next(lines)  # the stream is flowing before the slow request starts

            slow_done: list[int] = []

            def slow_call() -> None:
                r = httpx.post(gw.base_url + "/chat/completions", timeout=30,
                               headers={"Authorization": f"Bearer {slow_key}"},
                               json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
                slow_done.append(r.status_code)

            worker = threading.Thread(target=slow_call)
            worker.start()
            for line in lines:
                if line.startswith("data:"):
                    arrivals.append(time.monotonic())
            worker.join(timeout=30)

    assert slow_done == [200] and slowed.slowed == 2  # the slow request did wait 2 s in the store
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) > 20 and max(gaps) < 0.5, f"largest gap between chunks: {max(gaps):.2f} s"


def test_a_write_waiting_for_another_process_leaves_the_loop_free(gateway, tmp_path):
    """SQLite's calls run on the loop while they need not wait; one that would wait for another
    process's write lock is handed to a thread, and every stream of the worker goes on."""
    import sqlite3

    with extra_gateway(gateway, db=tmp_path / "own.db") as gw:
        model = gw.model(behavior={"chunk_delay": 0.05, "text": "tick " * 40})
        slow_user, fast_user = gw.user(), gw.user()
        slow_key, fast_key = gw.key(slow_user), gw.key(fast_user)
        arrivals: list[float] = []
        started = threading.Event()

        def read_stream() -> None:
            body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
            with httpx.stream("POST", gw.base_url + "/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {fast_key}"}, timeout=30) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        arrivals.append(time.monotonic())
                        started.set()

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert started.wait(10)  # the stream is flowing
        other_process = sqlite3.connect(tmp_path / "own.db", isolation_level=None)
        other_process.execute("BEGIN IMMEDIATE")  # holds the database's write lock for a second
        locked_at = time.monotonic()
        done: list[tuple[int, float]] = []

        def slow_call() -> None:
            r = httpx.post(gw.base_url + "/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {slow_key}"},
                           json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
            done.append((r.status_code, time.monotonic() - locked_at))

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(1.0)
        other_process.execute("COMMIT")
        other_process.close()
        caller.join(timeout=30)
        reader.join(timeout=30)
        assert len(gw.store.list_usage(slow_user).records) == 1  # it was admitted and settled all the same

    assert done and done[0][0] == 200 and done[0][1] >= 0.9  # the slow call did wait for the lock
    during = [t for t in arrivals if locked_at <= t <= locked_at + 1.0]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(during) >= 10, f"only {len(during)} chunks arrived while the lock was held"
    assert max(gaps) < 0.5, f"largest gap between chunks: {max(gaps):.2f} s"


def test_a_settlement_retry_never_sleeps_on_the_loop():
    """Run inline (a store's `attempt`), a failed settlement write does not sleep before its retry:
    it hands the retries to a thread (WouldWait), where sleeping is harmless."""
    import pytest

    from llm_gateway.billing.settle import write
    from llm_gateway.store.base import UsageRecord, WouldWait

    class FlakyInline:
        calls = 0

        def waiting_allowed(self) -> bool:
            return False

        def settle(self, record):
            self.calls += 1
            raise OSError("disk hiccup")

    store = FlakyInline()
    record = UsageRecord(request_id="req_x", user_id="u", key_id="k", model="m", created_at=0.0)
    started = time.monotonic()
    with pytest.raises(WouldWait):
        write(store, record)
    assert store.calls == 1 and time.monotonic() - started < 0.04
