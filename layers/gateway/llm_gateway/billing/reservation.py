"""A reservation: what admission took from a balance for one request, and everything settlement
needs to turn it into the actual charge, exactly once.

It names the user, key and model by id and carries the prices and multiplier in force at
admission, so settlement needs neither the caller nor the catalog: the same ticket settles a
request in the process that admitted it, or (as a dict, `as_dict` / `from_dict`, plain JSON) an
asynchronous task in another process later. Settling it twice, from anywhere, charges once: the
request id is the usage record's unique key in the store.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from ..catalog import Prices


@dataclass
class Ticket:
    request_id: str
    user_id: str
    key_id: str
    model: str
    route: str
    prices: Prices
    input_tokens: int
    reserved: int  # micros taken from the balance (and the key's cap) at admission
    multiplier: Fraction
    created_at: float = field(default_factory=time.time)
    settled: bool = False
    channel: str = ""  # the channel that answered (API.md 7), set by the relay
    attempts: int = 1  # upstream calls made for this request, over every channel tried
    rate: Any = None  # the admission's tightest rate-limit window (store.base.RateState); not persisted

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["multiplier"] = str(self.multiplier)
        out.pop("rate", None)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ticket:
        fields = dict(data)
        prices = {k: v for k, v in fields["prices"].items() if k != "free"}  # derived, not stored state
        fields["prices"] = Prices(**prices)
        fields["multiplier"] = Fraction(fields["multiplier"])
        return cls(**fields)
