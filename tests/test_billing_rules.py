"""The money rules as pure functions: exact integers, one rounding, cached tokens billed once."""

from __future__ import annotations

from fractions import Fraction

import pytest

from llm_gateway import tokens
from llm_gateway.billing.cost import cost_micros, estimate_micros
from llm_gateway.billing.usage import Usage, from_anthropic, from_openai
from llm_gateway.catalog import Prices
from llm_gateway.money import MoneyError, format_micros, to_micros


def prices(**kw) -> Prices:
    return Prices(**{k: to_micros(v) for k, v in kw.items()})


def test_cost_sums_every_term_and_rounds_up_once():
    p = prices(input="2.5", output="10", cache_read="1.25", cache_write="3.75", per_request="0.001")
    usage = Usage(input_tokens=3, output_tokens=1, cache_read_tokens=1, cache_write_tokens=1)
    # 3×2.5 + 1×10 + 1×1.25 + 1×3.75 = 22.5 micro-USD, + 1000 per request = 1022.5 → 1023.
    assert cost_micros(p, usage) == 1023


def test_multiplier_applies_before_the_single_rounding():
    p = prices(input="0.15", output="0.6")
    usage = Usage(input_tokens=10, output_tokens=10)  # 1.5 + 6 = 7.5 micro-USD
    assert cost_micros(p, usage) == 8
    assert cost_micros(p, usage, Fraction("0.9")) == 7  # 6.75 → 7
    assert cost_micros(p, usage, Fraction(2)) == 15


def test_zero_usage_on_a_free_model_costs_nothing():
    assert cost_micros(Prices(), Usage(input_tokens=1000, output_tokens=1000)) == 0


def test_estimate_reserves_the_whole_output_allowance():
    p = prices(input="2.5", output="10")
    assert estimate_micros(p, Usage(input_tokens=100, output_tokens=1000), Fraction(1)) == 250 + 10_000


def test_openai_cached_tokens_move_out_of_input():
    u = from_openai({"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 60}})
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (40, 60, 5)
    assert from_openai(None) is None


def test_anthropic_usage_deltas_update_the_running_usage():
    u = from_anthropic({"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 5,
                        "cache_creation_input_tokens": 7})
    from_anthropic({"output_tokens": 42}, into=u)
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (20, 42, 5, 7)


@pytest.mark.parametrize("text, micros", [("12.5", 12_500_000), ("0.000001", 1), ("3", 3_000_000), ("-1.5", -1_500_000)])
def test_money_parses_exactly(text, micros):
    assert to_micros(text) == micros
    assert to_micros(format_micros(micros)) == micros


@pytest.mark.parametrize("bad", ["1.0000001", "abc", "NaN", "inf", 1.5])
def test_money_refuses_what_it_cannot_hold_exactly(bad):
    with pytest.raises(MoneyError):
        to_micros(bad)


def test_format_micros():
    assert format_micros(12_500_000) == "12.5"
    assert format_micros(0) == "0"
    assert format_micros(-1) == "-0.000001"


def test_token_count_follows_the_documented_rule():
    enc = "o200k_base"
    text_tokens = tokens.count_text("Hello world", enc)
    assert text_tokens == 2
    messages = [{"role": "system", "content": "Hello world"},
                {"role": "user", "content": [{"type": "text", "text": "Hello world"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,xx"}}]}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    import json

    tool_tokens = tokens.count_text(json.dumps(tools, separators=(",", ":")), enc)
    assert tokens.count_messages(messages, enc, tools=tools) == 2 + 2 + 2 * 3 + 85 + tool_tokens


def test_encodings_load_from_the_shipped_files_without_network():
    assert tokens.count_text("tiktoken", "cl100k_base") > 0
    assert tokens.count_text("<|endoftext|> is plain text here", "o200k_base") > 3
