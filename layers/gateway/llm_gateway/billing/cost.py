"""The one rule that turns usage into money (API.md section 4), for every unit the catalog prices.

cost = (input × input price + cache writes × cache-write price + cache reads × cache-read price
        + output × output price + audio input × audio-input price + audio output × audio-output price
        + characters × per-1M-characters price
        + images × their per-image price + calls × the per-request price (of the call's pool))
       × tier multiplier, rounded up to the micro.

Per-token and per-character prices are micros per 1M units, so those terms are micro-micros; the
per-image and per-request terms are micros, scaled by 1M to join them. The sum is exact, divided once,
multiplied once by the multiplier (a Fraction) and rounded up once. No float is involved anywhere.

Every unit present in the usage is charged: a caller that bills an image model by the tokens its
upstream reports (gpt-image) passes those tokens and leaves `images` empty, and vice versa.
"""

from __future__ import annotations

from fractions import Fraction

from ..catalog import WILDCARD, Prices
from .usage import Usage

_PER_MILLION = 1_000_000


class Unpriced(ValueError):
    """The usage names a unit the model has no price for: an image size/quality that no `per_image`
    key matches (even by wildcard), or a call in a pool the model does not price. Raised before any
    money moves when the caller estimates a request, so it can answer 400."""


def cost_micros(prices: Prices, usage: Usage, multiplier: Fraction = Fraction(1)) -> int:
    if prices.free:
        return 0  # no price at all: nothing to look up, nothing to charge
    per_unit = (  # micro-micros: units counted per 1M
        usage.input_tokens * prices.input
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
        + usage.output_tokens * prices.output
        + usage.audio_input_tokens * prices.audio_input
        + usage.audio_output_tokens * prices.audio_output
        + usage.characters * prices.per_1m_chars
    )
    per_item = sum(n * image_price(prices, key) for key, n in usage.images.items() if n)  # micros
    if usage.requests:
        per_item += usage.requests * request_price(prices, usage.pool)
    # ceil(total / 1M × num / den) in integers: the same value as through a Fraction, at a
    # fraction of its cost on every settled call
    total = (per_unit + per_item * _PER_MILLION) * multiplier.numerator
    return -((-total) // (_PER_MILLION * multiplier.denominator))


def estimate_micros(prices: Prices, expected: Usage, multiplier: Fraction = Fraction(1)) -> int:
    """What admission reserves: the cost of the usage a request may reach (the input as counted and
    the whole output allowance; `n` images of the requested size and quality; the characters to
    speak). Unpriced if the request asks for something the model has no price for."""
    return cost_micros(prices, expected, multiplier)


def scaled_price(micros: int, multiplier: Fraction) -> int:
    """A catalog price as a tier pays it (shown by the model-rates route), rounded up like a cost."""
    return _ceil(micros * multiplier)


def image_price(prices: Prices, key: str) -> int:
    """Micros for one image of "SIZE/QUALITY": the exact key, else "SIZE/*", else "*/QUALITY",
    else "*". Unpriced when none is set."""
    size, _, quality = key.partition("/")
    for candidate in (key, f"{size}/{WILDCARD}", f"{WILDCARD}/{quality}", WILDCARD):
        price = prices.per_image.get(candidate)
        if price is not None:
            return price
    offered = ", ".join(sorted(prices.per_image)) or "none"
    raise Unpriced(f"no price for an image of size/quality '{key}' (priced: {offered})")


def request_price(prices: Prices, pool: str | None) -> int:
    """Micros for one call: the model's per_request price, or, for a model that prices pools, the
    price of `pool`. Unpriced for a pool (or no pool) such a model does not price."""
    if not isinstance(prices.per_request, dict):
        return prices.per_request
    if pool in prices.per_request:
        return prices.per_request[pool]
    raise Unpriced(
        f"no per-request price for pool '{pool}' (priced: {', '.join(sorted(prices.per_request)) or 'none'})"
    )


def _ceil(exact: Fraction) -> int:
    """The one rounding rule: up to the micro, without floats."""
    return -((-exact.numerator) // exact.denominator)
