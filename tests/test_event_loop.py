"""The store never stalls the event loop: under `serve` one worker carries many streams, and a slow
store call (a lock wait, a slow DynamoDB round trip) made for one request must not delay another
request's stream on the same worker."""

from __future__ import annotations

import threading
import time

import httpx

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
