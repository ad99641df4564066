"""Limits and money under concurrency, through a 2-worker `llm-gateway serve` sharing one store,
and through two in-process gateways over one store beside a flaky upstream.

Two processes (or two servers with their own caches) admit requests at once, so these tests prove
the store's atomic steps, not the accident of one event loop serialising requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llm_gateway.money import to_micros
from tests.conftest import extra_gateway
from tests.fakes.openai_upstream import OPERATOR_KEY
from tests.served import gateway_env, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory, fake_openai):
    workdir = tmp_path_factory.mktemp("served")
    env = gateway_env(workdir, {"OPENAI_API_KEY": OPERATOR_KEY, "OPENAI_BASE_URL": fake_openai.url + "/v1",
                                "GATEWAY_CACHE_TTL": "0.3"})
    server = serve(workdir, env, workers=2)
    yield server
    server.stop()


def _fire(url: str, key: str, bodies: list[dict]) -> list[int]:
    """Send every body at once (a barrier releases them together); return the statuses in order."""
    barrier = threading.Barrier(len(bodies))

    def one(body: dict) -> int:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return client.post(url + "/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}"}).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def _setup(served, model: str, *model_args: str, balance: str = "10", key_args: tuple = ()) -> tuple[str, str]:
    rc, _ = served.cli("models", "set", model, "--provider", "openai", *model_args)
    assert rc == 0
    user = "u-" + model
    assert served.cli("users", "create", user, "--balance", balance)[0] == 0
    rc, key = served.cli("keys", "create", user, *key_args)
    assert rc == 0
    return user, key["key"]


def _wait_for_model(served, key: str, model: str) -> None:
    """Overrides reach running servers within their cache window (0.3 s here, at most 5 s)."""
    time.sleep(0.5)
    r = httpx.get(served.base_url + "/models", headers={"Authorization": f"Bearer {key}"})
    assert model in [m["id"] for m in r.json()["data"]]


def _msg(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def test_forty_simultaneous_requests_admit_exactly_the_tier_limit(served):
    user, key = _setup(served, "conc-model-rpm", "--rpm", "regular=12")
    _wait_for_model(served, key, "conc-model-rpm")
    # _wait_for_model's /v1/models calls do not count: only model calls do.
    statuses = _fire(served.base_url, key, [_msg("conc-model-rpm")] * 40)
    assert statuses.count(200) == 12 and statuses.count(429) == 28
    assert served.cli("usage", user)[1]["total"] == 12


def test_forty_simultaneous_requests_admit_exactly_the_key_rpm(served):
    user, key = _setup(served, "conc-key-rpm", "--rpm", "regular=1000", key_args=("--rpm", "12"))
    _wait_for_model(served, key, "conc-key-rpm")
    statuses = _fire(served.base_url, key, [_msg("conc-key-rpm")] * 40)
    assert statuses.count(200) == 12 and statuses.count(429) == 28


def test_hundred_concurrent_charges_leave_balance_equal_start_minus_usage(served):
    user, key = _setup(served, "conc-charge", "--input", "2.5", "--output", "10", "--rpm", "regular=1000")
    _wait_for_model(served, key, "conc-charge")
    start = served.cli("users", "show", user)[1]["balance"]
    statuses = _fire(served.base_url, key, [_msg("conc-charge", max_tokens=50)] * 100)
    assert statuses == [200] * 100
    usage = served.cli("usage", user, "--limit", "100")[1]
    assert usage["total"] == 100
    assert all(r["cost"] == "0.000098" for r in usage["records"])  # 11 × 2.5 + 7 × 10 micro-USD, rounded up
    end = served.cli("users", "show", user)[1]["balance"]
    from decimal import Decimal

    assert Decimal(start) - Decimal(end) == Decimal(usage["sum"]["cost"]) == Decimal("0.0098")


def test_balance_covering_some_of_twenty_requests_never_goes_below_zero(served):
    # Each request reserves 11 × 2.5 + 1000 × 10 micro-USD ≈ 0.01 USD; the balance covers 4 of them.
    user, key = _setup(served, "conc-funds", "--input", "2.5", "--output", "10", "--rpm", "regular=1000",
                       balance="0.045")
    _wait_for_model(served, key, "conc-funds")
    statuses = _fire(served.base_url, key, [_msg("conc-funds", max_tokens=1000)] * 20)
    assert set(statuses) <= {200, 402}
    admitted = statuses.count(200)
    assert 4 <= admitted < 20
    from decimal import Decimal

    end = Decimal(served.cli("users", "show", user)[1]["balance"])
    usage = served.cli("usage", user, "--limit", "100")[1]
    assert end >= 0
    assert usage["total"] == admitted
    assert Decimal("0.045") - end == Decimal(usage["sum"]["cost"])


# ---------------------------------------------------------------------------------------------
# Money is conserved whatever happens to a call: two gateways over one store, one user with funds
# for only some of ~100 simultaneous calls, an upstream that fails some calls, breaks some streams
# midway, and clients that leave some streams early.

def _usage_records(store, user_id: str) -> list:
    records, cursor = [], None
    while True:
        page = store.list_usage(user_id, limit=100, cursor=cursor, with_totals=False)
        records += page.records
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor


async def _flaky_calls(urls: list[str], keys: list[str], plan: list[tuple[str, bool, bool]]) -> list[tuple[int, str]]:
    """Send every (model, stream, leave early) of `plan` within 0.3 s, spread over `urls` and `keys`;
    the (status, request id) of each. A caller that leaves early closes its connection after the
    third event of a stream."""
    limits = httpx.Limits(max_connections=len(plan), max_keepalive_connections=len(plan))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(i: int, model: str, stream: bool, leave: bool) -> tuple[int, str]:
            await asyncio.sleep(i // 10 * 0.03)  # ten waves: admissions and settlements interleave
            body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 300,
                    "stream": stream}
            async with client.stream("POST", urls[i % len(urls)] + "/v1/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {keys[i % len(keys)]}"}) as r:
                if leave and r.status_code == 200:
                    events = 0
                    async for line in r.aiter_lines():
                        events += line.startswith("data: ")
                        if events == 3:
                            break  # leaving the block closes the unfinished response's connection
                else:
                    await r.aread()
                return r.status_code, r.headers["x-request-id"]

        return await asyncio.gather(*(one(i, *call) for i, call in enumerate(plan)))


def test_money_is_conserved_across_two_gateways_beside_a_flaky_upstream(gateway):
    prices = {"input": "2.5", "output": "10", "rpm": {"regular": 1000}}
    ok = gateway.model(behavior={"delay": 0.4}, **prices)
    failing = gateway.model(behavior={"status": 500, "delay": 0.4}, **prices)
    breaking = gateway.model(behavior={"fail_after": 2}, **prices)
    slow = gateway.model(behavior={"chunk_delay": 0.02, "text": " ".join(["word"] * 40)}, **prices)
    # Each call reserves about 300 output tokens at 10 per 1M (~3020 micros with its input): 0.09 USD
    # covers 29 in flight. The 40 calls to `ok` and `failing` all arrive within 0.3 s and each holds
    # its reservation for 0.4 s, so funds run short however fast the machine.
    start = to_micros("0.09")
    user = gateway.user(balance="0.09")
    keys = [gateway.key(user), gateway.key(user)]
    plan = []
    for i in range(100):
        plan.append([(ok, False, False), (ok, True, False), (failing, i % 2 == 0, False), (breaking, True, False),
                     (slow, True, True)][i % 5])

    lowest = [start]
    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            lowest[0] = min(lowest[0], gateway.balance(user))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.monotonic()
    with extra_gateway(gateway) as other:
        watcher.start()
        try:
            answers = asyncio.run(_flaky_calls([gateway.url, other.url], keys, plan))
            admitted = {rid for status, rid in answers if status != 402}
            # Calls whose client left settle as the gateway notices: wait for the last of them.
            deadline = time.monotonic() + 10
            while len(_usage_records(gateway.store, user)) < len(admitted) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            running.clear()
            watcher.join(5)
    assert time.monotonic() - started < 20

    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 402, 502}, statuses
    assert statuses.count(402) > 0 and statuses.count(200) > 0  # funds did run short; calls did run
    records = _usage_records(gateway.store, user)
    ids = [r.request_id for r in records]
    assert len(ids) == len(set(ids))  # each call settled once
    assert set(ids) == admitted  # every admitted call settled, no refused one did
    end = gateway.balance(user)
    assert start - end == sum(r.cost for r in records)
    assert lowest[0] >= 0 and end >= 0
    for key in gateway.store.list_keys(user):
        assert key.held == 0  # no reservation left behind
    assert sum(k.used_fee for k in gateway.store.list_keys(user)) == start - end
    # What each kind of call was charged: nothing for a failure before output, the reported usage
    # for a finished answer, the counted output for a broken or abandoned stream.
    by_model = {}
    for r in records:
        by_model.setdefault(r.model, []).append(r)
    assert {(r.status, r.cost) for r in by_model.get(failing, [])} <= {("error", 0)}
    assert {(r.status, r.cost) for r in by_model.get(ok, [])} <= {("ok", 98)}
    assert all(r.status == "upstream_error" and r.cost > 0 for r in by_model.get(breaking, []))
    assert all(r.status == "client_closed" and 0 < r.output_tokens < 40 for r in by_model.get(slow, []))
