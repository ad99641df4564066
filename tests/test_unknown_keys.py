"""Unknown keys are remembered for the cache TTL: junk traffic costs one store read per TTL, not one
per request, the memory it takes is bounded, and a key minted here works at once."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway import accounts
from llm_gateway.admission import keys
from llm_gateway.admission.keys import KeyResolver, hash_key
from llm_gateway.errors import GatewayError


class CountingStore:
    """A store whose key reads are counted (and answered from a dict)."""

    def __init__(self) -> None:
        self.reads = 0
        self.keys: dict = {}

    def get_key_by_hash(self, digest: str):
        self.reads += 1
        return self.keys.get(digest)

    def get_user(self, user_id: str):
        raise AssertionError("no key, so no user is read")


def refused(resolver: KeyResolver, presented: str) -> bool:
    try:
        resolver.cached(presented) or resolver.resolve(presented)
    except GatewayError as err:
        assert err.kind == "invalid_api_key"
        return True
    return False


def test_an_unknown_key_is_read_once_per_ttl():
    store = CountingStore()
    resolver = KeyResolver(store, ttl=60)
    assert all(refused(resolver, "sk-junk") for _ in range(50))
    assert store.reads == 1


def test_the_unknown_key_cache_expires_with_the_ttl(monkeypatch):
    store = CountingStore()
    resolver = KeyResolver(store, ttl=2.0)
    now = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: now[0])
    assert refused(resolver, "sk-junk") and refused(resolver, "sk-junk")
    assert store.reads == 1
    now[0] += 2.0
    assert refused(resolver, "sk-junk")
    assert store.reads == 2


def test_no_ttl_means_no_negative_cache():
    store = CountingStore()
    resolver = KeyResolver(store, ttl=0)
    for _ in range(3):
        assert refused(resolver, "sk-junk")
    assert store.reads == 3


def test_a_flood_of_random_keys_keeps_the_cache_bounded(monkeypatch):
    monkeypatch.setattr(keys, "UNKNOWN_KEYS_CACHED", 100)
    store = CountingStore()
    resolver = KeyResolver(store, ttl=60)
    for i in range(1000):
        assert refused(resolver, f"sk-random-{i}")
    assert len(resolver._unknown) == 100
    # the newest are the ones kept: the last key costs no read, the first one is read again
    reads = store.reads
    assert refused(resolver, "sk-random-999") and store.reads == reads
    assert refused(resolver, "sk-random-0") and store.reads == reads + 1


def test_forget_drops_a_hash_from_the_unknown_keys():
    store = CountingStore()
    resolver = KeyResolver(store, ttl=60)
    assert refused(resolver, "sk-later")
    resolver.forget(hash_key("sk-later"))
    assert refused(resolver, "sk-later")
    assert store.reads == 2


# --- through the served gateway ------------------------------------------------------------------

def chat(gateway, key: str, model: str) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
def counted_key_reads(gateway, monkeypatch):
    """The gateway's store, with its key reads counted."""
    reads = []
    read = gateway.store.get_key_by_hash

    def counting(digest):
        reads.append(digest)
        return read(digest)

    monkeypatch.setattr(gateway.store, "get_key_by_hash", counting)
    gateway.forget_caches()
    yield reads
    gateway.forget_caches()


def test_requests_with_one_unknown_key_cost_one_store_read(gateway, counted_key_reads):
    model = gateway.model(input="1", output="1")
    junk = "sk-" + "j" * 45
    statuses = {chat(gateway, junk, model).status_code for _ in range(20)}
    assert statuses == {401}
    assert counted_key_reads.count(hash_key(junk)) == 1


def test_a_key_minted_here_after_being_refused_works_at_once(gateway, counted_key_reads, monkeypatch):
    model = gateway.model(input="1", output="1")
    admin = gateway.key(gateway.user(balance="5"), is_admin=True)
    minted = "sk-" + "m" * 45
    assert chat(gateway, minted, model).status_code == 401  # now remembered as unknown
    monkeypatch.setattr(accounts, "new_key", lambda: minted)
    r = httpx.post(gateway.url + "/api/v1/user/admin/new-api-token", headers={"Authorization": f"Bearer {admin}"},
                   json={"remark": "minted"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["key"] == minted
    assert chat(gateway, minted, model).status_code == 200
