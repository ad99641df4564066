"""Balance, membership, usage and model rates on the platform routes (API.md 5.1)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from llm_gateway.money import format_micros, to_micros
from llm_gateway.store.base import UsageRecord
from llm_gateway.times import iso
from tests.conftest import extra_gateway
from tests.platform_client import ADMIN, ENCODINGS, chat, data, get, post, refusal

COST_PER_CALL = 98  # 11 input tokens at 2.5 and 7 output tokens at 10 per 1M, rounded up to the micro


# --- balance -------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_balance_is_the_stored_balance_as_a_decimal_string(gateway, encoding):
    user_id = gateway.user(balance="12.5")
    admin = gateway.key(user_id, is_admin=True)
    assert data(post(gateway.url, f"{ADMIN}/balance", admin, {}, encoding)) == {
        "balance": "12.5", "free_balance": "0", "currency": "USD"}
    gateway.store.add_balance(user_id, to_micros("0.000001"))
    assert data(post(gateway.url, f"{ADMIN}/balance", admin, {}, encoding))["balance"] == "12.500001"


def test_a_negative_balance_shows_as_such(gateway):
    user_id = gateway.user(balance="0")
    gateway.store.add_balance(user_id, -1_500_000)
    admin = gateway.key(user_id, is_admin=True)
    assert data(post(gateway.url, f"{ADMIN}/balance", admin))["balance"] == "-1.5"


# --- membership ----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_membership_shows_the_expiry_the_tier_and_the_effective_tier(gateway, encoding):
    user_id = gateway.user(tier="vip", membership_days=30)
    admin = gateway.key(user_id, is_admin=True)
    shown = data(post(gateway.url, f"{ADMIN}/get-membership-expire-date", admin, {}, encoding))
    assert shown == {"membership_expire_date": iso(gateway.store.get_user(user_id).membership_expire_at),
                     "tier": "vip", "effective_tier": "vip"}
    expires = datetime.fromisoformat(shown["membership_expire_date"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None and abs(expires.timestamp() - (time.time() + 30 * 86400)) < 60


def test_an_expired_membership_falls_back_to_regular(gateway):
    user_id = gateway.user(tier="premium", membership_days=-1)
    admin = gateway.key(user_id, is_admin=True)
    shown = data(post(gateway.url, f"{ADMIN}/get-membership-expire-date", admin))
    assert (shown["tier"], shown["effective_tier"]) == ("premium", "regular")
    assert datetime.fromisoformat(shown["membership_expire_date"].replace("Z", "+00:00")) \
        < datetime.now(UTC)


def test_no_membership_expiry_is_null(gateway):
    user_id = gateway.user(tier="vip")
    admin = gateway.key(user_id, is_admin=True)
    assert data(post(gateway.url, f"{ADMIN}/get-membership-expire-date", admin)) == {
        "membership_expire_date": None, "tier": "vip", "effective_tier": "vip"}


# --- usage ---------------------------------------------------------------------------------------

def test_usage_sums_equal_the_balance_spent(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    user_id = gateway.user(balance="10")
    key = gateway.key(user_id)
    other_key = gateway.key(user_id)
    before = gateway.balance(user_id)
    for k in (key, key, other_key):
        assert chat(gateway.url, k, priced).status_code == 200
    assert chat(gateway.url, key, "mock-gpt").status_code == 200
    spent = before - gateway.balance(user_id)
    assert spent == 3 * COST_PER_CALL

    usage = data(get(gateway.url, "/api/v1/user/usage", key))  # any key of the user, admin or not
    assert usage["total"] == 4
    records = usage["records"]
    assert usage["sum"] == {
        "cost": format_micros(spent),
        "input_tokens": sum(r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"] for r in records),
        "output_tokens": sum(r["output_tokens"] for r in records),
        "requests": 4,
    }
    assert sum(to_micros(r["cost"]) for r in records) == spent
    assert [(r["input_tokens"], r["output_tokens"]) for r in records[1:]] == [(11, 7)] * 3
    assert [r["model"] for r in usage["records"]] == ["mock-gpt", priced, priced, priced]  # newest first
    assert [r["created_at"] for r in usage["records"]] == sorted((r["created_at"] for r in usage["records"]),
                                                                reverse=True)
    assert {r["user_id"] for r in usage["records"]} == {user_id}


def test_usage_filters_by_model_and_time_and_pages(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    user_id = gateway.user(balance="10")
    key = gateway.key(user_id)
    for _ in range(3):
        assert chat(gateway.url, key, priced).status_code == 200
    assert chat(gateway.url, key, "mock-gpt").status_code == 200
    records = data(get(gateway.url, "/api/v1/user/usage", key))["records"]

    only = data(get(gateway.url, "/api/v1/user/usage", key, {"model": priced}))
    assert only["total"] == 3 and only["sum"]["cost"] == format_micros(3 * COST_PER_CALL)

    first = data(get(gateway.url, "/api/v1/user/usage", key, {"page": 1, "pageSize": 2}))
    second = data(get(gateway.url, "/api/v1/user/usage", key, {"page": 2, "pageSize": 2}))
    assert first["total"] == second["total"] == 4 and first["sum"] == second["sum"]
    assert first["records"] + second["records"] == records
    assert data(get(gateway.url, "/api/v1/user/usage", key, {"page": 3, "pageSize": 2}))["records"] == []

    future = data(get(gateway.url, "/api/v1/user/usage", key, {"since": "2999-01-01T00:00:00Z"}))
    assert future["total"] == 0 and future["sum"]["cost"] == "0"
    past = data(get(gateway.url, "/api/v1/user/usage", key, {"until": "2000-01-01"}))
    assert past["total"] == 0
    window = data(get(gateway.url, "/api/v1/user/usage", key,
                      {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00+00:00"}))
    assert window["total"] == 4


def test_usage_cursor_walks_every_record_once_keeping_the_sums(gateway):
    user_id = gateway.user(balance="10")
    key = gateway.key(user_id)
    for i in range(5):
        assert gateway.store.settle(UsageRecord(request_id=f"req_cursor_{user_id}_{i}", user_id=user_id,
                                                key_id="key_x", model="mock-gpt", created_at=1_800_000_000.0 + i,
                                                cost=10))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"pageSize": 2, **({"cursor": cursor, "page": 7} if cursor else {})}  # a cursor overrides page
        answer = data(get(gateway.url, "/api/v1/user/usage", key, params))
        assert set(answer) == {"total", "records", "sum", "next_cursor"}
        assert answer["total"] == 5 and answer["sum"]["cost"] == format_micros(50)
        seen += [r["request_id"] for r in answer["records"]]
        pages += 1
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"req_cursor_{user_id}_{i}" for i in reversed(range(5))]
    paged = data(get(gateway.url, "/api/v1/user/usage", key, {"page": 2, "pageSize": 2}))
    assert [r["request_id"] for r in paged["records"]] == seen[2:4] and paged["next_cursor"]


def test_usage_refuses_a_cursor_it_did_not_make_for_this_listing(gateway):
    user_id = gateway.user(balance="10")
    key = gateway.key(user_id)
    for _i in range(2):
        assert chat(gateway.url, key, "mock-gpt").status_code == 200
    cursor = data(get(gateway.url, "/api/v1/user/usage", key, {"pageSize": 1}))["next_cursor"]
    assert cursor
    other_key = gateway.key(gateway.user())
    for caller, params in [(key, {"cursor": "not-a-cursor"}), (key, {"cursor": cursor, "model": "mock-gpt"}),
                           (other_key, {"cursor": cursor})]:
        message = refusal(get(gateway.url, "/api/v1/user/usage", caller, params), 400, "invalid_request_error")
        assert "'cursor'" in message


def test_usage_shows_only_the_callers_own_user(gateway):
    user_a, user_b = gateway.user(), gateway.user()
    key_a, key_b = gateway.key(user_a), gateway.key(user_b)
    assert chat(gateway.url, key_b, "mock-gpt").status_code == 200
    assert data(get(gateway.url, "/api/v1/user/usage", key_a))["total"] == 0
    assert data(get(gateway.url, "/api/v1/user/usage", key_b))["total"] == 1


@pytest.mark.parametrize("params, named", [
    ({"pageSize": 101}, "pageSize"), ({"pageSize": 0}, "pageSize"), ({"page": 0}, "page"),
    ({"page": "two"}, "page"), ({"since": "yesterday"}, "since"), ({"until": "soon"}, "until"),
])
def test_usage_refuses_bad_parameters_naming_them(gateway, params, named):
    message = refusal(get(gateway.url, "/api/v1/user/usage", gateway.key(), params), 400, "invalid_request_error")
    assert f"'{named}'" in message


def test_usage_needs_a_key(gateway):
    refusal(get(gateway.url, "/api/v1/user/usage", None), 401, "invalid_api_key")


# --- usage summary -------------------------------------------------------------------------------

SUMMARY = "/api/v1/user/usage/summary"


def test_usage_summary_sums_per_utc_day_and_per_model(gateway):
    user_id = gateway.user()
    key = gateway.key(user_id)
    (stored,) = gateway.store.list_keys(user_id)
    midnight = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    for n, (created_at, model, cost) in enumerate(((midnight - 1, "m-a", 1000), (midnight, "m-a", 2000),
                                                   (midnight + 3600, "m-b", 4000))):
        assert gateway.store.settle(UsageRecord(
            request_id=f"req_{user_id}_{n}", user_id=user_id, key_id=stored.key_id, model=model,
            created_at=created_at, cost=cost, input_tokens=3, cache_read_tokens=1, output_tokens=2))
    assert data(get(gateway.url, SUMMARY, key)) == {  # by UTC day, the default
        "groups": [{"key": "2026-02-28", "requests": 1, "input_tokens": 4, "output_tokens": 2, "cost": "0.001"},
                   {"key": "2026-03-01", "requests": 2, "input_tokens": 8, "output_tokens": 4, "cost": "0.006"}],
        "sum": {"requests": 3, "input_tokens": 12, "output_tokens": 6, "cost": "0.007"},
    }
    by_model = data(get(gateway.url, SUMMARY, key, {"group": "model", "since": "2026-03-01T00:00:00Z"}))
    assert by_model == {
        "groups": [{"key": "m-a", "requests": 1, "input_tokens": 4, "output_tokens": 2, "cost": "0.002"},
                   {"key": "m-b", "requests": 1, "input_tokens": 4, "output_tokens": 2, "cost": "0.004"}],
        "sum": {"requests": 2, "input_tokens": 8, "output_tokens": 4, "cost": "0.006"},
    }
    only_b = data(get(gateway.url, SUMMARY, key, {"model": "m-b", "until": "2026-03-02T00:00:00Z"}))
    assert [(g["key"], g["cost"]) for g in only_b["groups"]] == [("2026-03-01", "0.004")]


def test_usage_summary_agrees_with_the_usage_listing(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    user_id = gateway.user(balance="10")
    key, admin = gateway.key(user_id), gateway.key(user_id, is_admin=True)
    for model in (priced, priced, "mock-gpt"):
        assert chat(gateway.url, key, model).status_code == 200
    listed = data(get(gateway.url, "/api/v1/user/usage", key))["sum"]
    summary = data(get(gateway.url, SUMMARY, admin))  # any key of the user, admin or not
    assert summary["sum"] == {k: listed[k] for k in ("requests", "input_tokens", "output_tokens", "cost")}
    assert [g["key"] for g in summary["groups"]] == [datetime.now(UTC).strftime("%Y-%m-%d")]
    by_model = data(get(gateway.url, SUMMARY, key, {"group": "model"}))["groups"]
    assert {g["key"]: (g["requests"], g["cost"]) for g in by_model} == {
        priced: (2, format_micros(2 * COST_PER_CALL)), "mock-gpt": (1, "0")}
    assert data(get(gateway.url, SUMMARY, gateway.key()))["groups"] == []  # another user's key sees none of it


@pytest.mark.parametrize("params, named", [
    ({"group": "week"}, "group"), ({"since": "yesterday"}, "since"), ({"until": "soon"}, "until"),
])
def test_usage_summary_refuses_bad_parameters_naming_them(gateway, params, named):
    message = refusal(get(gateway.url, SUMMARY, gateway.key(), params), 400, "invalid_request_error")
    assert f"'{named}'" in message


def test_usage_summary_needs_a_key(gateway):
    refusal(get(gateway.url, SUMMARY, None), 401, "invalid_api_key")


# --- model rates ---------------------------------------------------------------------------------

# What a token model without audio, image or character prices shows for those: null.
NO_UNIT_PRICES = {"audio_input": None, "audio_output": None, "per_image": None, "per_1m_chars": None}
RATE_FIELDS = {"kind", "provider", "input", "output", "cache_read", "cache_write", "audio_input", "audio_output",
               "per_request", "per_image", "per_1m_chars"}


def test_model_rates_list_every_model_the_key_may_use_per_1m_tokens(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10", cache_read="1.25", per_request="0.01")
    rates = data(get(gateway.url, "/api/v1/pay/model-rates", gateway.key()))  # not an admin key
    assert rates[priced] == {"input": "2.5", "output": "10", "cache_read": "1.25", "cache_write": "0",
                             "per_request": "0.01", "provider": "openai", "kind": "chat",
                             **NO_UNIT_PRICES}
    assert set(rates) == set(gateway.runtime.catalogs.current().models)
    assert rates["claude-2-web"]["provider"] == "anthropic"


def test_model_rates_follow_the_keys_permissions(gateway):
    priced = gateway.model(provider="openai", input="2.5", output="10")
    key = gateway.key(permissions=[priced, "claude-*"])
    rates = data(get(gateway.url, "/api/v1/pay/model-rates", key))
    catalog = gateway.runtime.catalogs.current().models
    assert set(rates) == {priced} | {m for m in catalog if m.startswith("claude-")}


@pytest.fixture(scope="module")
def discounted(gateway, tmp_path_factory):
    """A gateway of its own (tier multipliers are global) in euros, where vip pays 0.9 and premium 1/3."""
    with extra_gateway(gateway, tmp_path_factory.mktemp("discounted") / "gateway.db", currency="EUR") as g:
        g.store.set_tier_override("vip", {"multiplier": "0.9"})
        g.store.set_tier_override("premium", {"multiplier": "1/3"})
        g.runtime.catalogs.refresh()
        yield g


def test_model_rates_apply_the_callers_effective_tier_multiplier(discounted):
    priced = discounted.model(provider="openai", input="2.5", output="10", per_request="0.000001")
    vip = data(get(discounted.url, "/api/v1/pay/model-rates", discounted.key(discounted.user(tier="vip"))))
    assert vip[priced] == {"input": "2.25", "output": "9", "cache_read": "0", "cache_write": "0",
                           "per_request": "0.000001", "provider": "openai", "kind": "chat",
                           **NO_UNIT_PRICES}  # 0.0000009 rounds up
    premium = data(get(discounted.url, "/api/v1/pay/model-rates", discounted.key(discounted.user(tier="premium"))))
    assert (premium[priced]["input"], premium[priced]["output"]) == ("0.833334", "3.333334")
    lapsed = discounted.key(discounted.user(tier="vip", membership_days=-1))
    assert data(get(discounted.url, "/api/v1/pay/model-rates", lapsed))[priced]["input"] == "2.5"


def test_model_rates_show_every_unit_a_model_prices_with_the_multiplier_applied_once(discounted):
    images = discounted.model(provider="mock", kind="image", input="5", output="40",
                              per_image={"1024x1024/high": "0.167", "*/low": "0.000001", "*": "0.25"})
    pools = discounted.model(provider="mock", kind="task", per_request={"FAST": "0.05", "NORMAL": "0.03"})
    speech = discounted.model(provider="mock", kind="speech", per_1m_chars="15", audio_output="12")
    realtime = discounted.model(provider="mock", kind="realtime", input="4", audio_input="32", audio_output="64")
    vip = data(get(discounted.url, "/api/v1/pay/model-rates", discounted.key(discounted.user(tier="vip"))))
    assert vip[images] == {
        "kind": "image", "provider": "mock", "input": "4.5", "output": "36", "cache_read": "0", "cache_write": "0",
        "audio_input": None, "audio_output": None, "per_request": None,
        "per_image": {"1024x1024/high": "0.1503", "*/low": "0.000001", "*": "0.225"}, "per_1m_chars": None,
    }
    assert (vip[pools]["kind"], vip[pools]["per_request"]) == ("task", {"FAST": "0.045", "NORMAL": "0.027"})
    assert (vip[speech]["per_1m_chars"], vip[speech]["audio_output"], vip[speech]["per_image"]) == ("13.5", "10.8", None)
    assert (vip[realtime]["audio_input"], vip[realtime]["audio_output"]) == ("28.8", "57.6")
    premium = data(get(discounted.url, "/api/v1/pay/model-rates", discounted.key(discounted.user(tier="premium"))))
    assert premium[pools]["per_request"] == {"FAST": "0.016667", "NORMAL": "0.01"}  # 0.05/3 rounds up
    assert premium[images]["per_image"]["1024x1024/high"] == "0.055667"  # 0.167/3 = 0.0556666… rounds up


def test_model_rates_of_the_default_catalog_carry_kinds_and_unit_prices(gateway):
    rates = data(get(gateway.url, "/api/v1/pay/model-rates", gateway.key()))
    assert all(set(r) == RATE_FIELDS for r in rates.values())
    assert {m: rates[m]["kind"] for m in ("gpt-4o", "dall-e-3", "tts-1", "text-embedding-3-small", "gpt-realtime",
                                          "mock-image", "mock-tts", "mock-embedding")} == {
        "gpt-4o": "chat", "dall-e-3": "image", "tts-1": "speech", "text-embedding-3-small": "embedding",
        "gpt-realtime": "realtime", "mock-image": "image", "mock-tts": "speech", "mock-embedding": "embedding"}
    assert rates["dall-e-3"]["per_image"]["1024x1024/standard"] == "0.04"
    assert rates["tts-1"]["per_1m_chars"] == "15"
    assert rates["mock-image"]["per_image"] == {"*": "0"}


def test_balance_is_in_the_operators_currency(discounted):
    user_id = discounted.user(balance="3")
    admin = discounted.key(user_id, is_admin=True)
    assert data(post(discounted.url, f"{ADMIN}/balance", admin)) == {
        "balance": "3", "free_balance": "0", "currency": "EUR"}
