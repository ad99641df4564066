"""Admission for every model, image, audio, search and task call (API.md section 4).

`Gate.admit` runs the steps in the contract's order — input limit, rate limit, funds — and the last
two are one atomic store operation, so a request refused for funds does not use up a rate-limit slot.
The `Ticket` (billing's reservation) it returns is what billing settles, exactly once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..billing.cost import Unpriced, estimate_micros
from ..billing.reservation import Ticket
from ..billing.usage import Usage
from ..catalog import Catalog, CatalogSource, ModelSpec
from ..errors import GatewayError
from ..money import format_micros
from ..store.base import Counter, Store
from .keys import Caller, permits


class Gate:
    def __init__(self, store: Store, catalogs: CatalogSource) -> None:
        self.store = store
        self.catalogs = catalogs
        self.full = FullWindows()

    def model_for(self, caller: Caller, name: str) -> ModelSpec:
        """403 before 404: a key limited to some models learns nothing about the others."""
        if not permits(caller.key.permissions, name):
            raise GatewayError(
                "permission", f"This API key is not permitted to use the model '{name}'.", param="model"
            )
        spec = self.catalogs.current().get(name)
        if spec is None:
            raise GatewayError(
                "model_not_found", f"The model '{name}' does not exist.", param="model", code="model_not_found"
            )
        return spec

    def admit(
        self,
        caller: Caller,
        spec: ModelSpec,
        *,
        input_tokens: int,
        max_output_tokens: int | None,
        request_id: str,
        route: str,
        expected: Usage | None = None,
    ) -> Ticket:
        """`expected`, when given, is what the call may use (images, characters, ...) in place of its
        input tokens and whole output allowance."""
        if input_tokens > spec.max_input_tokens:
            raise context_too_long(spec.max_input_tokens, input_tokens)
        catalog = self.catalogs.current()
        multiplier = catalog.multiplier(caller.tier)
        if expected is None:
            output_cap = max_output_tokens if max_output_tokens and max_output_tokens > 0 else spec.max_output_tokens
            expected = Usage(input_tokens=input_tokens, output_tokens=output_cap)
        try:
            reserve = 0 if spec.prices.free else estimate_micros(spec.prices, expected, multiplier)
        except Unpriced as exc:  # the request asks for something the model has no price for
            raise GatewayError("invalid_request", f"The model '{spec.name}' cannot price this request: {exc}.",
                               param="model") from None
        counters = _model_counters(caller, spec, catalog)
        now = time.time()
        self.full.refuse(counters, now, lambda c, wait: _model_rate_limited(caller, spec, c, wait))
        result = self.store.admit(caller.user_id, caller.key.key_id, counters, reserve, now)
        if not result.ok:
            if result.refused == "rate":
                self.full.remember(counters, result.counter_id, now + result.retry_after)
                raise _model_rate_limited(caller, spec, result.counter_id, result.retry_after)
            key_cap = result.refused == "funds_key"
            raise self._short_of_funds(caller, spec, reserve, expected, max_output_tokens, key_cap)
        return Ticket(
            request_id=request_id,
            user_id=caller.user_id,
            key_id=caller.key.key_id,
            model=spec.name,
            route=route,
            prices=spec.prices,
            input_tokens=input_tokens,
            reserved=reserve,
            multiplier=multiplier,
            rate=result.rate,
        )

    def _short_of_funds(self, caller: Caller, spec: ModelSpec, reserve: int, expected: Usage,
                        max_output_tokens: int | None, key_cap: bool) -> GatewayError:
        """The 402 in words a person can act on: what the reservation needs, what there is (read now:
        this is the refusal's path only), and, for a token-priced call, how to need less."""
        if key_cap:
            key = self.store.get_key(caller.key.key_id) or caller.key
            left = key.fee_remaining()
            has = f"this API key's spending cap has {format_micros(max(left or 0, 0))} left"
            message = f"This API key's spending cap does not cover the request: it needs {format_micros(reserve)} "
        else:
            user = self.store.get_user(caller.user_id) or caller.user
            has = f"the balance is {format_micros(user.balance)}"
            message = f"Insufficient balance: this request needs {format_micros(reserve)} "
        message += f"reserved and {has}."
        if expected.output_tokens and spec.prices.output:
            asked = "its max_tokens" if max_output_tokens else "the model's default cap: no max_tokens was sent"
            message += (f" The reservation counts {expected.input_tokens} input tokens and {expected.output_tokens} "
                        f"output tokens ({asked}): a lower max_tokens needs less.")
        return GatewayError("insufficient_balance", message)

    def hit_model(self, caller: Caller, spec: ModelSpec) -> None:
        """A free call to a model (token counting): it counts against the model's and the key's
        rate limits like any call, and reserves nothing."""
        counters = _model_counters(caller, spec, self.catalogs.current())
        now = time.time()
        self.full.refuse(counters, now, lambda c, wait: _model_rate_limited(caller, spec, c, wait))
        result = self.store.admit(caller.user_id, caller.key.key_id, counters, 0, now)
        if not result.ok:
            self.full.remember(counters, result.counter_id, now + result.retry_after)
            raise _model_rate_limited(caller, spec, result.counter_id, result.retry_after)

    def hit(self, caller: Caller, counter_id: str, limit: int, window: float) -> None:
        """A plain rate-limit hit with no money involved (platform routes' per-user limits)."""
        counters = [Counter(counter_id, limit, window)]
        now = time.time()
        self.full.refuse(counters, now, lambda c, wait: _too_many(wait))
        result = self.store.admit(caller.user_id, None, counters, 0, now)
        if not result.ok:
            self.full.remember(counters, result.counter_id, now + result.retry_after)
            raise _too_many(result.retry_after)


def context_too_long(limit: int, counted: int) -> GatewayError:
    """The input over the model's limit, said as each provider says it: clients (LiteLLM's
    ContextWindowExceededError, LangChain's summarise-and-retry) recognise it by these words."""
    openai = (f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
              f"{counted} tokens. Please reduce the length of the messages.")
    return GatewayError("context_length_exceeded", openai, param="messages",
                        worded={"anthropic": f"prompt is too long: {counted} tokens > {limit} maximum"})


def _too_many(retry_after: int) -> GatewayError:
    return GatewayError(
        "rate_limited", f"Too many requests; retry in {retry_after} s.", headers={"Retry-After": str(retry_after)}
    )


class FullWindows:
    """Rate-limit windows this process saw full, until they close: a request they would refuse is
    refused here, with no store write (under a hot user, refusals would otherwise be most of the
    writes on one user's items). It cannot over-admit: a window is only ever remembered as full, and
    the store still counts every request it admits. A window is remembered with its limit, so a
    limit raised meanwhile is asked of the store at once."""

    MAX = 100_000

    def __init__(self) -> None:
        self._closes: dict[tuple[str, int], float] = {}  # (counter id, limit) -> when its window closes

    def refuse(self, counters: list[Counter], now: float, refusal: Callable[[str, int], GatewayError]) -> None:
        if not self._closes:
            return
        for counter in counters:
            closes = self._closes.get((counter.counter_id, counter.limit))
            if closes is None:
                continue
            if now < closes:
                raise refusal(counter.counter_id, max(1, math.ceil(closes - now)))
            self._closes.pop((counter.counter_id, counter.limit), None)

    def remember(self, counters: list[Counter], counter_id: str | None, closes: float) -> None:
        for counter in counters:
            if counter.counter_id == counter_id:
                if len(self._closes) >= self.MAX:
                    self._closes.clear()
                self._closes[(counter.counter_id, counter.limit)] = closes


def require_kind(spec: ModelSpec, kind: str, route: str) -> None:
    """400 naming the model and the route when the model is of another kind (a speech model on chat)."""
    if spec.kind != kind:
        raise GatewayError(
            "invalid_request", f"The model '{spec.name}' is a {spec.kind} model: it is not served on {route}.",
            param="model",
        )


def output_allowance(spec: ModelSpec, body: dict[str, Any], names: tuple[str, ...], *, choices: int = 1,
                     default: int | None = None) -> int:
    """The output a request may produce, for its reservation: the first of the `names` the body sets,
    else `default`, else the model's own output cap; once per requested choice.

    A value above the model's output cap is refused (400 naming the field and the cap), as OpenAI
    and Anthropic refuse it, rather than reserved or forwarded.
    """
    chosen: int | None = None
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if value > spec.max_output_tokens:
                raise GatewayError(
                    "invalid_request",
                    f"'{name}' is too large: {value}. The model '{spec.name}' supports at most "
                    f"{spec.max_output_tokens} output tokens, whereas you provided {value}.",
                    param=name,
                )
            chosen = value if chosen is None else chosen
    cap = chosen or default or spec.max_output_tokens
    return cap * max(choices, 1)


def _model_counters(caller: Caller, spec: ModelSpec, catalog: Catalog) -> list[Counter]:
    """One counter per (user, model) at the effective tier's limit, one per key with its own rpm."""
    counters = [Counter(f"rpm:{caller.user_id}:{spec.name}", catalog.rpm(spec, caller.tier))]
    if caller.key.rpm is not None:
        counters.append(Counter(f"rpm-key:{caller.key.key_id}", caller.key.rpm))
    return counters


def _model_rate_limited(caller: Caller, spec: ModelSpec, counter_id: str | None, retry_after: int) -> GatewayError:
    which = "this API key" if (counter_id or "").startswith("rpm-key:") else (
        f"model '{spec.name}' on the {caller.tier} tier"
    )
    return GatewayError(
        "rate_limited",
        f"Rate limit reached for {which}; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
