"""Limits and money under concurrency, through a 2-worker `llm-gateway serve` sharing one store.

Two processes admit requests at once, so these tests prove the store's atomic steps, not the
accident of one event loop serialising requests.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

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
