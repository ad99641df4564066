"""Money as integers of 1e-6 of the currency ("micros"). Never a float.

Prices in the catalog are decimal strings per 1M tokens; since a micro is 1e-6 of the currency, a
price of P currency per 1M tokens is exactly P micros per token. Rounding happens in one place:
`billing.cost`, which rounds up to the micro.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS = 1_000_000


class MoneyError(ValueError):
    pass


def to_micros(value: str | int | Decimal) -> int:
    """Parse a decimal amount of currency ("12.5", 3) into micros, exactly.

    More than six decimals, floats or non-numbers are refused rather than rounded silently.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("amount must be a decimal string or an integer, not a float")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError(f"not a decimal amount: {value!r}") from None
    if not d.is_finite():
        raise MoneyError(f"not a decimal amount: {value!r}")
    if d and d.adjusted() > 15:  # far past any real amount; and 1e400000000 must not become an int
        raise MoneyError(f"amount is too large: {value!r}")
    scaled = d * MICROS
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"amount has more than 6 decimals: {value!r}")
    return int(scaled)


def format_micros(micros: int) -> str:
    """12_500_000 -> "12.5"; -1 -> "-0.000001"; 0 -> "0"."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(int(micros)), MICROS)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")
