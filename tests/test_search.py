"""The search family (API.md 5.3) end to end, on both stores: Google Custom Search and Serper behind the
gateway, fakes of both on 127.0.0.1 recording what they receive."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from llm_gateway.http.search import cache_key
from tests.conftest import extra_gateway
from tests.fakes.search_upstream import (
    GOOGLE_OPERATOR_CX,
    GOOGLE_OPERATOR_KEY,
    SERPER_OPERATOR_KEY,
    FakeSearch,
)
from tests.fakes.server import ServerThread

GOOGLE = "/api/v1/openapi/search/google-search/v1"
SERPER = "/api/v1/openapi/search/serper/v1"
GOOGLE_PRICE = 5_000  # micros: $5 per 1000 queries
SERPER_PRICE = 1_000


@pytest.fixture(scope="module")
def fake_search():
    fake = FakeSearch()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture(scope="module")
def gw(gateway, fake_search):
    """A gateway over the session's store whose environment has the search providers' credentials."""
    env = {**gateway.runtime.settings.env,
           "GOOGLE_CSE_API_KEY": GOOGLE_OPERATOR_KEY, "GOOGLE_CSE_CX": GOOGLE_OPERATOR_CX,
           "GOOGLE_CSE_BASE_URL": fake_search.url + "/customsearch/v1",
           "SERPER_API_KEY": SERPER_OPERATOR_KEY, "SERPER_BASE_URL": fake_search.url}
    with extra_gateway(gateway, env=env) as served:
        yield served


def q() -> str:
    return "query " + uuid.uuid4().hex[:12]


def envelope_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status and body["data"] is None and body["message"], body
    return body


# --- Google ---------------------------------------------------------------------------------------

def test_google_answers_unchanged_with_the_operators_credentials_and_charges_one_request(gw, fake_search):
    user = gw.user("1")
    key = gw.key(user)
    query = q()
    r = httpx.get(gw.url + GOOGLE, params={"q": query, "num": "2", "start": "11", "lr": "lang_en", "safe": "active",
                                           "siteSearch": "example.com", "siteSearchFilter": "i", "dateRestrict": "d7",
                                           "gl": "us", "hl": "en", "cx": "client-cx", "fields": "items",
                                           "unknown": "x"},
                  headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    (seen,) = fake_search.for_query(query)
    assert r.json() == FakeSearch.google_answer(seen.params)  # Google's JSON, not the platform envelope
    assert "statusCode" not in r.json()
    assert seen.params["key"] == [GOOGLE_OPERATOR_KEY] and seen.params["cx"] == [GOOGLE_OPERATOR_CX]
    assert {k: v[0] for k, v in seen.params.items() if k not in ("key", "cx")} == {
        "q": query, "num": "2", "start": "11", "lr": "lang_en", "safe": "active", "siteSearch": "example.com",
        "siteSearchFilter": "i", "dateRestrict": "d7", "gl": "us", "hl": "en"}
    assert key not in seen.query_string and key not in str(seen.headers)
    assert gw.balance(user) == 1_000_000 - GOOGLE_PRICE


def test_google_takes_the_key_from_the_query_and_never_forwards_it(gw, fake_search):
    user = gw.user("1")
    key = gw.key(user)
    query = q()
    r = httpx.get(gw.url + GOOGLE, params={"q": query, "key": key})
    assert r.status_code == 200, r.text
    (seen,) = fake_search.for_query(query)
    assert seen.params["key"] == [GOOGLE_OPERATOR_KEY]
    assert key not in seen.query_string and "key=sk-" not in seen.query_string
    assert gw.balance(user) == 1_000_000 - GOOGLE_PRICE


def test_google_without_a_key_is_401_in_the_platform_shape(gw):
    body = envelope_error(httpx.get(gw.url + GOOGLE, params={"q": q()}), 401)
    assert body["errorType"] == "invalid_api_key"


@pytest.mark.parametrize("params, field", [
    ({"num": "eleven"}, "num"), ({"num": "0"}, "num"), ({"num": "11"}, "num"), ({"start": "-1"}, "start"),
    ({}, "q"),
])
def test_google_bad_parameters_are_400_naming_the_field(gw, fake_search, params, field):
    user = gw.user("1")
    query = q()
    if field != "q":
        params = {"q": query, **params}
    r = httpx.get(gw.url + GOOGLE, params=params, headers={"x-api-key": gw.key(user)})
    body = envelope_error(r, 400)
    assert body["errorType"] == "invalid_request_error" and f"'{field}'" in body["message"]
    assert not fake_search.for_query(query)
    assert gw.balance(user) == 1_000_000


@pytest.mark.parametrize("upstream, status", [(500, 502), (403, 502), (401, 502), (400, 400), (429, 429)])
def test_google_upstream_errors_answer_in_the_platform_envelope_and_charge_nothing(gw, fake_search, upstream, status):
    user = gw.user("1")
    query = q()
    fake_search.behaviors[query] = {"status": upstream}
    r = httpx.get(gw.url + GOOGLE, params={"q": query}, headers={"authorization": f"Bearer {gw.key(user)}"})
    envelope_error(r, status)
    assert len(fake_search.for_query(query)) == 1
    assert gw.balance(user) == 1_000_000


def test_search_needs_the_models_permission(gw, fake_search):
    user = gw.user("1")
    key = gw.key(user, permissions=["gpt-4o", "serper-search"])
    query = q()
    body = envelope_error(httpx.get(gw.url + GOOGLE, params={"q": query, "key": key}), 403)
    assert body["errorType"] == "permission_error" and "google-search" in body["message"]
    r = httpx.post(gw.url + SERPER, json={"q": query}, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    other = gw.key(user, permissions=["google-search"])
    envelope_error(httpx.post(gw.url + SERPER, json={"q": query}, headers={"x-api-key": other}), 403)
    assert len(fake_search.for_query(query)) == 1
    assert gw.balance(user) == 1_000_000 - SERPER_PRICE


def test_missing_credentials_are_502_naming_the_setting(gateway):
    """The session gateway has no search credentials in its environment."""
    key = gateway.key(gateway.user("1"))
    body = envelope_error(httpx.get(gateway.url + GOOGLE, params={"q": q(), "key": key}), 502)
    assert "GOOGLE_CSE_API_KEY" in body["message"]
    body = envelope_error(httpx.post(gateway.url + SERPER, json={"q": q()}, headers={"x-api-key": key}), 502)
    assert "SERPER_API_KEY" in body["message"]


def test_missing_cx_is_502_naming_it(gateway, fake_search):
    env = {**gateway.runtime.settings.env, "GOOGLE_CSE_API_KEY": GOOGLE_OPERATOR_KEY,
           "GOOGLE_CSE_BASE_URL": fake_search.url + "/customsearch/v1"}
    with extra_gateway(gateway, env=env) as served:
        key = served.key(served.user("1"))
        body = envelope_error(httpx.get(served.url + GOOGLE, params={"q": q(), "key": key}), 502)
        assert "GOOGLE_CSE_CX" in body["message"]


# --- Serper ---------------------------------------------------------------------------------------

def test_serper_answers_unchanged_with_the_operators_key(gw, fake_search):
    user = gw.user("1")
    key = gw.key(user)
    query = q()
    r = httpx.post(gw.url + SERPER, json={"q": query, "gl": "de", "hl": "de", "page": 2, "num": 5, "extra": 1},
                   headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    (seen,) = fake_search.for_query(query)
    assert seen.path == "/search" and seen.headers["x-api-key"] == SERPER_OPERATOR_KEY
    assert seen.body == {"q": query, "gl": "de", "hl": "de", "page": 2, "num": 5}
    assert key not in str(seen.headers) and key not in str(seen.body)
    assert r.json() == FakeSearch.serper_answer(seen.body)
    assert r.headers["x-gateway-cache"] == "miss"
    assert gw.balance(user) == 1_000_000 - SERPER_PRICE


def test_serper_takes_a_form_body(gw, fake_search):
    user = gw.user("1")
    query = q()
    r = httpx.post(gw.url + SERPER, data={"q": query, "num": "3", "page": "1"}, headers={"x-api-key": gw.key(user)})
    assert r.status_code == 200, r.text
    (seen,) = fake_search.for_query(query)
    assert seen.body == {"q": query, "num": 3, "page": 1}
    assert gw.balance(user) == 1_000_000 - SERPER_PRICE


def test_serper_cache_hit_is_charged_and_marked_and_the_upstream_not_called(gw, fake_search):
    first, second = gw.user("1"), gw.user("1")
    query = q()
    body = {"q": query, "num": 4, "cache": 3600}
    r1 = httpx.post(gw.url + SERPER, json=body, headers={"x-api-key": gw.key(first)})
    assert r1.status_code == 200 and r1.headers["x-gateway-cache"] == "miss", r1.text
    # any user, the same parameters (form or JSON), another cache age: the stored answer
    r2 = httpx.post(gw.url + SERPER, data={"q": query, "num": "4", "cache": "60"}, headers={"x-api-key": gw.key(second)})
    assert r2.status_code == 200, r2.text
    assert r2.headers["x-gateway-cache"] == "hit"
    assert r2.json() == r1.json()
    assert len(fake_search.for_query(query)) == 1
    assert gw.balance(first) == 1_000_000 - SERPER_PRICE
    assert gw.balance(second) == 1_000_000 - SERPER_PRICE
    (record,) = gw.store.list_usage(second).records
    assert (record.model, record.cost, record.status) == ("serper-search", SERPER_PRICE, "ok")


def test_serper_cache_misses_on_other_parameters_without_cache_and_when_expired(gw, fake_search):
    user = gw.user("1")
    key = gw.key(user)
    query = q()

    def ask(**body):
        r = httpx.post(gw.url + SERPER, json={"q": query, **body}, headers={"x-api-key": key})
        assert r.status_code == 200, r.text
        return r.headers["x-gateway-cache"]

    assert ask(num=3, cache=600) == "miss"
    assert ask(num=5, cache=600) == "miss"  # another parameter
    assert ask(num=3, gl="fr", cache=600) == "miss"
    assert ask(num=3) == "miss"  # no cache asked: always fresh
    assert len(fake_search.for_query(query)) == 4
    # the stored answer is now 120 s old: too old for 60 s, young enough for 600 s
    stored = gw.store.get_cached(cache_key("serper-search", {"q": query, "num": 3}))
    assert stored is not None
    gw.store.put_cached(cache_key("serper-search", {"q": query, "num": 3}), stored.answer, time.time() - 120)
    assert ask(num=3, cache=60) == "miss"
    assert len(fake_search.for_query(query)) == 5
    assert ask(num=3, cache=600) == "hit"  # the miss above stored a fresh answer
    assert len(fake_search.for_query(query)) == 5
    assert gw.balance(user) == 1_000_000 - 6 * SERPER_PRICE


@pytest.mark.parametrize("body, field", [
    ({"cache": 0}, "cache"), ({"cache": 86401}, "cache"), ({"cache": "soon"}, "cache"), ({"num": "x"}, "num"),
    ({"page": 0}, "page"), ({"q": ""}, "q"), ({"q": 5}, "q"),
])
def test_serper_bad_fields_are_400_naming_the_field(gw, fake_search, body, field):
    user = gw.user("1")
    query = q()
    r = httpx.post(gw.url + SERPER, json={"q": query, **body}, headers={"x-api-key": gw.key(user)})
    body_ = envelope_error(r, 400)
    assert f"'{field}'" in body_["message"]
    assert not fake_search.for_query(query)
    assert gw.balance(user) == 1_000_000


@pytest.mark.parametrize("upstream, status", [(500, 502), (403, 502)])
def test_serper_upstream_error_is_the_platform_envelope_charges_nothing_and_is_not_cached(gw, fake_search, upstream,
                                                                                         status):
    user = gw.user("1")
    query = q()
    fake_search.behaviors[query] = {"status": upstream}
    for _ in range(2):
        r = httpx.post(gw.url + SERPER, json={"q": query, "cache": 600}, headers={"x-api-key": gw.key(user)})
        body = envelope_error(r, status)
        assert body["errorType"] == "upstream_error"
    assert len(fake_search.for_query(query)) == 2
    assert gw.balance(user) == 1_000_000
    assert gw.store.get_cached(cache_key("serper-search", {"q": query})) is None


def test_a_cache_hit_still_needs_funds(gw, fake_search):
    query = q()
    rich = gw.user("1")
    assert httpx.post(gw.url + SERPER, json={"q": query, "cache": 600}, headers={"x-api-key": gw.key(rich)}).status_code == 200
    poor = gw.user("0")
    r = httpx.post(gw.url + SERPER, json={"q": query, "cache": 600}, headers={"x-api-key": gw.key(poor)})
    envelope_error(r, 402)
    assert gw.balance(poor) == 0


# --- the mock provider ----------------------------------------------------------------------------

def test_the_mock_provider_answers_both_searches(gw, fake_search):
    store = gw.store
    try:
        for model in ("google-search", "serper-search"):
            store.set_model_override(model, {"provider": "mock"})
        gw.runtime.catalogs.refresh()
        user = gw.user("1")
        key = gw.key(user)
        query = q()
        r = httpx.get(gw.url + GOOGLE, params={"q": query, "num": "3", "key": key})
        assert r.status_code == 200, r.text
        google = r.json()
        assert google["kind"] == "customsearch#search" and "searchInformation" in google
        assert len(google["items"]) == 3
        assert all({"title", "link", "snippet"} <= set(item) for item in google["items"])
        r = httpx.post(gw.url + SERPER, json={"q": query, "num": 2}, headers={"x-api-key": key})
        assert r.status_code == 200, r.text
        serper = r.json()
        assert serper["searchParameters"]["q"] == query
        assert [o["position"] for o in serper["organic"]] == [1, 2]
        assert all({"title", "link", "snippet"} <= set(o) for o in serper["organic"])
        assert not fake_search.for_query(query)
        assert gw.balance(user) == 1_000_000 - GOOGLE_PRICE - SERPER_PRICE
    finally:
        for model in ("google-search", "serper-search"):
            store.delete_model_override(model)
        gw.runtime.catalogs.refresh()


def test_a_browser_may_read_the_cache_header(gateway):
    r = httpx.get(gateway.url + "/api/v1/pay/model-rates", headers={"Origin": "https://app.example",
                                                                    "Authorization": f"Bearer {gateway.key()}"})
    assert "x-gateway-cache" in r.headers["access-control-expose-headers"].lower()
