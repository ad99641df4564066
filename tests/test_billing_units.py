"""Billing in units, not only tokens: every unit the catalog prices, one cost function, one rounding.

Pure functions first (cost of each unit, rounding, wildcards, pools, the catalog's parsing), then the
usage record's units, then a reservation persisted as JSON and settled from other processes' stores.
"""

from __future__ import annotations

import json
import threading
from fractions import Fraction

import pytest

from llm_gateway import accounts
from llm_gateway.admission.gate import Gate
from llm_gateway.admission.keys import Caller
from llm_gateway.billing.cost import Unpriced, cost_micros, estimate_micros
from llm_gateway.billing.reservation import Ticket
from llm_gateway.billing.settle import charge, settle
from llm_gateway.billing.usage import Usage, image_key
from llm_gateway.catalog import KINDS, Catalog, CatalogSource, Prices, default_catalog, parse_prices
from llm_gateway.money import MoneyError, to_micros
from llm_gateway.store import open_store
from llm_gateway.store.base import UsageRecord
from llm_gateway.views import usage_view
from tests.dynamo import table_prefix


def prices(**raw) -> Prices:
    """Prices as the catalog file writes them: decimal strings, {pool: price}, {"SIZE/QUALITY": price}."""
    return parse_prices(raw)


# --- each unit, exact to the micro ----------------------------------------------------------------

@pytest.mark.parametrize("raw, usage, micros", [
    ({"input": "2.5"}, Usage(input_tokens=1000), 2_500),
    ({"output": "10"}, Usage(output_tokens=1000), 10_000),
    ({"cache_read": "1.25"}, Usage(cache_read_tokens=1000), 1_250),
    ({"cache_write": "3.75"}, Usage(cache_write_tokens=1000), 3_750),
    ({"audio_input": "32"}, Usage(audio_input_tokens=1000), 32_000),
    ({"audio_output": "64"}, Usage(audio_output_tokens=1000), 64_000),
    ({"per_1m_chars": "15"}, Usage(characters=4096), 61_440),  # tts-1: 4096 characters cost $0.06144
    ({"per_image": {"1024x1024/standard": "0.04"}}, Usage(images={"1024x1024/standard": 2}), 80_000),
    ({"per_request": "0.05"}, Usage(), 50_000),
    ({"per_request": {"FAST": "0.05", "NORMAL": "0.03"}}, Usage(pool="NORMAL"), 30_000),
])
def test_each_unit_costs_its_price_exactly(raw, usage, micros):
    assert cost_micros(prices(**raw), usage) == micros


def test_a_unit_the_usage_does_not_name_costs_nothing_even_where_priced():
    p = prices(input="2.5", audio_input="32", per_1m_chars="15", per_image={"*": "0.04"})
    assert cost_micros(p, Usage(input_tokens=1000)) == 2_500


def test_a_mix_of_units_is_summed_exactly_and_rounded_up_once():
    p = prices(input="0.15", audio_output="0.15", per_1m_chars="0.1", per_image={"*": "0.000001"})
    usage = Usage(input_tokens=3, audio_output_tokens=3, characters=1, images={"256x256/low": 1})
    # 0.45 + 0.45 + 0.1 micro-USD is exactly 1, + 1 for the image: 2 (rounding each term up would give 4).
    assert cost_micros(p, usage) == 2
    assert cost_micros(p, Usage(input_tokens=3, audio_output_tokens=3, characters=2)) == 2  # 1.1 → 2


def test_the_multiplier_applies_once_to_the_whole_sum():
    p = prices(per_image={"*": "0.000001"}, per_request="0.000001")
    three_images = Usage(images={"a/b": 2, "c/d": 1}, requests=0)
    assert cost_micros(p, three_images, Fraction(1, 3)) == 1  # 3 × 1/3 = 1, not 3 × ceil(1/3)
    assert cost_micros(p, Usage(images={"a/b": 3}), Fraction(1, 4)) == 1  # (3 + 1) / 4
    assert cost_micros(p, Usage(images={"a/b": 3}), Fraction(2)) == 8


# --- calls: per_request, requests and pools --------------------------------------------------------

def test_a_token_call_pays_its_per_request_price_once_as_before_units():
    p = prices(input="2.5", output="10", cache_read="1.25", cache_write="3.75", per_request="0.001")
    usage = Usage(input_tokens=3, output_tokens=1, cache_read_tokens=1, cache_write_tokens=1)
    assert usage.requests == 1
    assert cost_micros(p, usage) == 1023  # as tests/test_billing_rules.py: 22.5 + 1000, rounded up


def test_requests_count_the_per_request_price():
    p = prices(input="1", per_request="0.01")
    assert cost_micros(p, Usage(input_tokens=1000, requests=0)) == 1_000  # not a call of its own
    assert cost_micros(p, Usage(requests=3)) == 30_000


def test_per_request_prices_by_pool():
    p = prices(per_request={"FAST": "0.05", "NORMAL": "0.03"})
    assert cost_micros(p, Usage(pool="FAST")) == 50_000
    assert cost_micros(p, Usage(pool="NORMAL", requests=2)) == 60_000
    assert cost_micros(p, Usage(pool="FAST"), Fraction("0.9")) == 45_000
    assert cost_micros(p, Usage(requests=0)) == 0  # no call, no pool needed


@pytest.mark.parametrize("pool", [None, "RELAX", "fast"])
def test_a_pool_the_model_does_not_price_is_unpriced(pool):
    with pytest.raises(Unpriced, match="pool"):
        cost_micros(prices(per_request={"FAST": "0.05", "NORMAL": "0.03"}), Usage(pool=pool))


def test_a_single_per_request_price_serves_every_pool():
    assert cost_micros(prices(per_request="0.05"), Usage(pool="FAST")) == 50_000


# --- images: sizes, qualities and wildcards -------------------------------------------------------

WILD = prices(per_image={"1024x1024/hd": "0.000003", "1024x1024/*": "0.000002", "*/hd": "0.000005",
                         "*": "0.000007"})


@pytest.mark.parametrize("size, quality, micros", [
    ("1024x1024", "hd", 3),  # the exact size/quality beats every wildcard
    ("1024x1024", "standard", 2),  # then the size with any quality
    ("1792x1024", "hd", 5),  # then the quality at any size
    ("512x512", "low", 7),  # then "*"
])
def test_an_image_is_priced_by_the_most_specific_key(size, quality, micros):
    assert cost_micros(WILD, Usage(images={image_key(size, quality): 1})) == micros


def test_a_size_wildcard_beats_a_quality_wildcard():
    p = prices(per_image={"1024x1024/*": "0.000002", "*/hd": "0.000005"})
    assert cost_micros(p, Usage(images={"1024x1024/hd": 1})) == 2


def test_an_image_with_no_matching_price_is_unpriced_before_any_money_moves():
    p = prices(per_image={"1024x1024/standard": "0.04", "*/hd": "0.08"})
    with pytest.raises(Unpriced) as refused:
        estimate_micros(p, Usage(images={"512x512/standard": 1}))
    assert "512x512/standard" in str(refused.value) and "1024x1024/standard" in str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert estimate_micros(p, Usage(images={"512x512/hd": 2})) == 160_000
    assert cost_micros(p, Usage(images={"512x512/standard": 0})) == 0  # none produced: nothing to price


def test_a_free_model_costs_nothing_whatever_it_produces():
    assert cost_micros(Prices(), Usage(images={"any/size": 4}, characters=99, pool="FAST")) == 0
    assert cost_micros(prices(per_image={"*": "0"}), Usage(images={"1024x1024/hd": 2})) == 0


def test_the_estimate_is_the_cost_of_the_expected_usage():
    p = prices(input="2.5", output="10", per_request="0.001")
    assert estimate_micros(p, Usage(input_tokens=100, output_tokens=1000), Fraction(1)) == 250 + 10_000 + 1_000
    speech = prices(per_1m_chars="30")
    assert estimate_micros(speech, Usage(characters=1000), Fraction("0.9")) == 27_000


# --- prices in the catalog ------------------------------------------------------------------------

def test_catalog_prices_are_parsed_into_integer_micros():
    p = prices(input="2.5", audio_input="32", audio_output="64", per_1m_chars="15",
               per_request={"FAST": "0.05", "NORMAL": "0.03"}, per_image={"*/*": "0.25", "1024x1024/hd": "0.08"})
    assert (p.input, p.audio_input, p.audio_output, p.per_1m_chars) == (2_500_000, 32_000_000, 64_000_000, 15_000_000)
    assert p.per_request == {"FAST": 50_000, "NORMAL": 30_000}
    assert p.per_image == {"*": 250_000, "1024x1024/hd": 80_000}  # "*/*" is "*"


@pytest.mark.parametrize("raw", [
    {"per_image": {"1024x1024": "0.04"}},
    {"per_image": {"/hd": "0.04"}},
    {"per_image": {"a/b/c": "0.04"}},
    {"per_image": "0.04"},
    {"per_request": {"FA ST": "0.05"}},
])
def test_malformed_unit_prices_are_refused(raw):
    with pytest.raises(ValueError):
        parse_prices(raw)


@pytest.mark.parametrize("raw", [{"per_1m_chars": 15.0}, {"per_image": {"*": 0.04}}, {"audio_input": "1.0000001"}])
def test_unit_prices_are_exact_decimals_never_floats(raw):
    with pytest.raises(MoneyError):
        parse_prices(raw)


def test_free_means_no_price_at_all():
    assert prices().free and prices(per_image={"*": "0"}, per_request={"FAST": "0"}).free
    for raw in ({"audio_output": "1"}, {"per_1m_chars": "1"}, {"per_image": {"*": "0.01"}},
                {"per_request": {"FAST": "0", "NORMAL": "0.01"}}):
        assert not prices(**raw).free, raw


def test_a_model_has_a_kind_chat_by_default():
    added = {"added": {"provider": "mock"}, "tts": {"provider": "mock", "kind": "speech"}}
    catalog = Catalog(default_catalog(), {"models": added})
    assert (catalog.models["added"].kind, catalog.models["tts"].kind, catalog.models["gpt-4o"].kind) == (
        "chat", "speech", "chat")
    with pytest.raises(ValueError, match="kind"):
        Catalog(default_catalog(), {"models": {"odd": {"provider": "mock", "kind": "video"}}})


def test_the_default_catalog_carries_openais_image_speech_embedding_and_realtime_models():
    models = Catalog(default_catalog()).models
    kinds = {"gpt-image-1": "image", "gpt-image-1-mini": "image", "dall-e-3": "image", "tts-1": "speech",
             "tts-1-hd": "speech", "gpt-4o-mini-tts": "speech", "text-embedding-3-small": "embedding",
             "text-embedding-3-large": "embedding", "gpt-realtime": "realtime", "gpt-realtime-mini": "realtime"}
    for name, kind in kinds.items():
        spec = models[name]
        assert (spec.kind, spec.provider, spec.prices.free) == (kind, "openai", False), name
        assert spec.price_source["date"] and spec.price_source["source"], name
    for name, kind in {"mock-image": "image", "mock-tts": "speech", "mock-embedding": "embedding"}.items():
        assert (models[name].kind, models[name].provider, models[name].prices.free) == (kind, "mock", True)
    assert {spec.kind for spec in models.values()} <= set(KINDS)
    # List prices as the catalog holds them.
    assert cost_micros(models["dall-e-3"].prices, Usage(images={"1024x1024/hd": 1})) == 80_000
    assert cost_micros(models["gpt-image-1"].prices, Usage(images={"1536x1024/medium": 1})) == 63_000
    assert cost_micros(models["tts-1-hd"].prices, Usage(characters=1_000_000)) == 30_000_000
    assert cost_micros(models["text-embedding-3-small"].prices, Usage(input_tokens=1_000_000)) == 20_000
    assert cost_micros(models["gpt-realtime"].prices,
                       Usage(input_tokens=100, audio_input_tokens=1000, audio_output_tokens=1000)) == 400 + 32_000 + 64_000
    # The chat models' prices are what they were.
    assert cost_micros(models["gpt-4o"].prices, Usage(input_tokens=1000, output_tokens=1000)) == 12_500


# --- the usage record's units ---------------------------------------------------------------------

def ticket(p: Prices, reserved: int = 0, request_id: str = "req_units") -> Ticket:
    return Ticket(request_id=request_id, user_id="u", key_id="k", model="m", route="/v1/images/generations",
                  prices=p, input_tokens=0, reserved=reserved, multiplier=Fraction(1))


def test_a_token_call_records_no_units():
    record = charge(ticket(prices(input="1")), Usage(input_tokens=5, output_tokens=2))
    assert record.units == {}
    assert "units" not in usage_view(record)


def test_a_call_records_its_non_token_units():
    p = prices(per_image={"*": "0.04"}, audio_input="1", per_1m_chars="1", per_request={"FAST": "0.05"})
    usage = Usage(images={"1024x1024/hd": 2, "512x512/low": 0}, audio_input_tokens=7, characters=11, pool="FAST")
    record = charge(ticket(p), usage)
    assert record.units == {"images": {"1024x1024/hd": 2}, "audio_input_tokens": 7, "characters": 11,
                            "pool": "FAST"}
    assert record.cost == 80_000 + 7 + 11 + 50_000
    assert usage_view(record)["units"] == record.units
    assert charge(ticket(p, request_id="r2"), Usage(requests=0, audio_output_tokens=1)).units == {
        "audio_output_tokens": 1, "requests": 0}


def test_a_failed_call_that_produced_nothing_costs_nothing():
    p = prices(per_request="0.05", per_image={"*": "0.04"})
    assert charge(ticket(p), None, "upstream_error").cost == 0
    assert charge(ticket(p, request_id="r2"), Usage(images={"1024x1024/hd": 1}), "client_closed").cost == 90_000
    assert charge(ticket(p, request_id="r3"), None, "ok").cost == 50_000


def test_a_unit_priced_at_no_key_at_settlement_costs_the_reservation():
    record = charge(ticket(prices(per_image={"1024x1024/hd": "0.08"}), reserved=80_000),
                    Usage(images={"256x256/hd": 1}))
    assert (record.cost, record.units) == (80_000, {"images": {"256x256/hd": 1}})


# --- a reservation persisted, settled later by other processes, exactly once ----------------------

@pytest.fixture(params=["sqlite", "dynamodb"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    request.getfixturevalue("moto_dynamodb")
    return f"dynamodb://{table_prefix()}"


def test_a_persisted_reservation_settles_once_from_two_other_stores_at_once(store_url):
    admitting = open_store(store_url)
    admitting.init()
    admitting.set_model_override("painter", {"provider": "mock", "kind": "image", "input": "2.5", "output": "10",
                                             "per_image": {"1024x1024/standard": "0.04"}})
    user = accounts.create_user(admitting, "u-painter", balance=to_micros("1"))
    key, _ = accounts.issue_key(admitting, user.user_id)
    gate = Gate(admitting, CatalogSource(admitting))
    caller = Caller(key=key, user=user, tier="regular")
    admitted = gate.admit(caller, gate.model_for(caller, "painter"), input_tokens=100, max_output_tokens=1000,
                          request_id="req_persisted", route="/v1/images/generations")
    assert admitted.reserved == 250 + 10_000
    assert admitting.get_user(user.user_id).balance == 1_000_000 - 10_250
    persisted = json.dumps(admitted.as_dict())

    usage = Usage(input_tokens=100, output_tokens=20, images={"1024x1024/standard": 1})
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def settle_elsewhere() -> None:
        try:
            store = open_store(store_url)  # another process's store over the same data
            later = Ticket.from_dict(json.loads(persisted))
            barrier.wait()
            settle(store, later, usage)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=settle_elsewhere) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors

    cost = 250 + 200 + 40_000
    assert admitting.get_user(user.user_id).balance == 1_000_000 - cost
    stored_key = admitting.get_key(key.key_id)
    assert (stored_key.held, stored_key.used_fee, stored_key.used_times) == (0, cost, 1)
    page = admitting.list_usage(user.user_id)
    assert page.total == 1
    (record,) = page.records
    assert (record.request_id, record.cost, record.reserved, record.units) == (
        "req_persisted", cost, 10_250, {"images": {"1024x1024/standard": 1}})


def test_a_ticket_survives_json_with_every_kind_of_price():
    p = prices(input="2.5", audio_output="64", per_1m_chars="15", per_request={"FAST": "0.05", "NORMAL": "0.03"},
               per_image={"*": "0.25", "1024x1024/hd": "0.08"})
    original = Ticket(request_id="req_json", user_id="u", key_id="k", model="m", route="/mj/imagine",
                      prices=p, input_tokens=12, reserved=50_000, multiplier=Fraction(9, 10))
    again = Ticket.from_dict(json.loads(json.dumps(original.as_dict())))
    assert again == original
    usage = Usage(pool="FAST", images={"1024x1024/hd": 1}, characters=10)
    assert cost_micros(again.prices, usage, again.multiplier) == cost_micros(p, usage, Fraction(9, 10))


def test_record_units_default_to_empty():
    assert UsageRecord(request_id="r", user_id="u", key_id="k", model="m", created_at=0.0).units == {}
