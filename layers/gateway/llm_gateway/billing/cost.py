"""The one rule that turns tokens into money (API.md section 4).

cost = (input × input price + cache writes × cache-write price + cache reads × cache-read price
        + output × output price + per-request price) × tier multiplier, rounded up to the micro.
Prices are micros per 1M tokens, so the token terms are summed exactly in micro-micros and divided
once; the multiplier is a Fraction. No float is involved anywhere.
"""

from __future__ import annotations

from fractions import Fraction

from ..catalog import Prices
from .usage import Usage

_PER_MILLION = 1_000_000


def cost_micros(prices: Prices, usage: Usage, multiplier: Fraction = Fraction(1)) -> int:
    numerator = (
        usage.input_tokens * prices.input
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
        + usage.output_tokens * prices.output
        + prices.per_request * _PER_MILLION
    )
    return _ceil(Fraction(numerator, _PER_MILLION) * multiplier)


def scaled_price(micros: int, multiplier: Fraction) -> int:
    """A catalog price as a tier pays it (shown by the model-rates route), rounded up like a cost."""
    return _ceil(micros * multiplier)


def estimate_micros(prices: Prices, input_tokens: int, max_output_tokens: int, multiplier: Fraction) -> int:
    """What admission reserves: the input as counted, and the whole output allowance."""
    return cost_micros(prices, Usage(input_tokens=input_tokens, output_tokens=max_output_tokens), multiplier)


def _ceil(exact: Fraction) -> int:
    """The one rounding rule: up to the micro, without floats."""
    return -((-exact.numerator) // exact.denominator)
