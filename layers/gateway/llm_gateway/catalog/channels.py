"""Upstream channels (API.md 7): which ways of reaching an upstream serve a model, and in what order.

A channel is a provider kind with its own address, credential *reference* and mapping of catalog
models to upstream ids. The store holds them beside the catalog overrides, so they are read with the
catalog (at most once per cache window) and a change reaches every process within 5 seconds.

Without a stored channel serving a model, the model's own provider as the environment configures it
is its one implicit channel, named after the provider: a deployment that never defines a channel
behaves exactly as before. A model served by stored channels is served by those only.

`Router.route` answers a model's `Route` from a per-catalog memo, so choosing costs a dict lookup
per request; a model with one channel takes no choice at all (`Route.single`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog import Catalog, ModelSpec
    from ..errors import GatewayError
    from ..providers import Providers

# The fields a stored channel may have, in the order the contract lists them.
CHANNEL_FIELDS = ("provider", "base_url", "api_key_env", "models", "map", "priority", "weight", "region",
                  "api_version", "enabled")


@dataclass(frozen=True)
class Channel:
    name: str
    provider: str
    base_url: str = ""
    api_key_env: str = ""  # the NAME of the variable / secret holding the credential, never its value
    models: tuple[str, ...] = ()  # catalog names, a trailing "*" a prefix; empty: the provider's models
    map: tuple[tuple[str, str], ...] = ()  # catalog model -> upstream id (deployment, Bedrock model id)
    priority: int = 0
    weight: int = 1
    region: str = ""
    api_version: str = ""
    enabled: bool = True
    implicit: bool = False  # the environment's provider, not a stored channel

    def serves(self, spec: ModelSpec) -> bool:
        if not self.models:
            return spec.provider == self.provider
        return any(spec.name == p or (p.endswith("*") and spec.name.startswith(p[:-1])) for p in self.models)

    def upstream_model(self, spec: ModelSpec) -> str:
        return dict(self.map).get(spec.name) or spec.upstream_model

    def view(self) -> dict[str, Any]:
        """The channel as the operator sees it: its credential by name only."""
        return {"name": self.name, "provider": self.provider, "base_url": self.base_url or None,
                "api_key_env": self.api_key_env or None, "models": list(self.models), "map": dict(self.map),
                "priority": self.priority, "weight": self.weight, "region": self.region or None,
                "api_version": self.api_version or None, "enabled": self.enabled}


def parse_channel(name: str, raw: Mapping[str, Any]) -> Channel:
    """A channel from its stored fields; ValueError for one the gateway cannot use."""
    from ..providers import REGISTRY

    provider = str(raw.get("provider") or "")
    if provider not in REGISTRY:
        raise ValueError(f"channel {name}: unknown provider {provider!r} (one of {', '.join(REGISTRY)})")
    weight = int(raw.get("weight", 1))
    if weight < 0:
        raise ValueError(f"channel {name}: weight must be 0 or more")
    mapping = raw.get("map") or {}
    if not isinstance(mapping, dict):
        raise ValueError(f"channel {name}: map is {{model: upstream id}}")
    return Channel(
        name=name, provider=provider, base_url=str(raw.get("base_url") or "").rstrip("/"),
        api_key_env=str(raw.get("api_key_env") or ""), models=tuple(str(m) for m in raw.get("models") or ()),
        map=tuple(sorted((str(k), str(v)) for k, v in mapping.items())), priority=int(raw.get("priority", 0)),
        weight=weight, region=str(raw.get("region") or ""), api_version=str(raw.get("api_version") or ""),
        enabled=bool(raw.get("enabled", True)),
    )


def parse_channels(raw: Mapping[str, Mapping[str, Any]]) -> tuple[Channel, ...]:
    """The stored channels the gateway can use, by name; a broken one is left out (and logged)."""
    from .. import logs

    out = []
    for name in sorted(raw):
        try:
            out.append(parse_channel(name, raw[name]))
        except (TypeError, ValueError) as exc:
            logs.log("channel ignored", level=30, channel=name, reason=str(exc))
    return tuple(out)


@dataclass(slots=True)
class Hop:
    """One channel made ready for a model: its provider instance and the model's upstream id."""

    channel: Channel
    provider: Any
    model: str  # the upstream id (Azure deployment, Bedrock model id) the body and URL carry
    remapped: bool  # whether `model` differs from the catalog's upstream id (the plan's body then changes)

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.remapped and "model" in body:
            return {**body, "model": self.model}
        return body


@dataclass(slots=True)
class Route:
    """A model's channels, highest priority first; `single` when there is exactly one."""

    groups: tuple[tuple[Hop, ...], ...]
    single: Hop | None
    model: str

    def order(self, cooling: Mapping[str, float], attempts: int) -> Iterator[Hop]:
        """At most `attempts` hops: by priority, weighted random within each, cooling channels
        skipped; when every channel is cooling they are tried anyway, soonest ready first."""
        now = time.monotonic()
        given = 0
        later: list[Hop] = []
        for group in self.groups:
            ready: list[Hop] = []
            for hop in group:
                (ready if cooling.get(hop.channel.name, 0.0) <= now else later).append(hop)
            while ready and given < attempts:
                hop = _weighted(ready)
                ready.remove(hop)
                given += 1
                yield hop
        if given == 0:
            for hop in sorted(later, key=lambda h: cooling.get(h.channel.name, 0.0))[:attempts]:
                yield hop


def _weighted(hops: list[Hop]) -> Hop:
    total = sum(h.channel.weight for h in hops)
    if total <= 0:
        return hops[0]
    pick = random.uniform(0, total)
    for hop in hops:
        pick -= hop.channel.weight
        if pick <= 0 and hop.channel.weight:
            return hop
    return hops[-1]


@dataclass
class Router:
    """Routes per model for the current catalog, and this process's cool-downs."""

    providers: Providers
    cooldown: float = 30.0
    max_attempts: int = 3
    cooling: dict[str, float] = field(default_factory=dict)  # channel name -> monotonic time it is ready
    _catalog: Catalog | None = None
    _routes: dict[str, Route] = field(default_factory=dict)

    def route(self, catalog: Catalog, spec: ModelSpec) -> Route:
        if catalog is not self._catalog:
            self._routes = {}
            self._catalog = catalog
        found = self._routes.get(spec.name)
        if found is None:
            found = self._routes[spec.name] = self._build(catalog.channels, spec)
        return found

    def cool(self, hop: Hop, err: GatewayError) -> None:
        """Take a failed channel out of the choice for a while (longer when a 429 said so)."""
        seconds = self.cooldown
        retry = err.headers.get("Retry-After", "")
        if retry.isdigit():
            seconds = max(seconds, float(retry))
        self.cooling[hop.channel.name] = time.monotonic() + seconds

    def _build(self, channels: tuple[Channel, ...], spec: ModelSpec) -> Route:
        serving = [c for c in channels if c.serves(spec)]
        if not serving:
            implicit = Hop(Channel(spec.provider, spec.provider, implicit=True), self.providers.get(spec.provider),
                           spec.upstream_model, False)
            return Route(((implicit,),), implicit, spec.name)
        enabled = [c for c in serving if c.enabled]
        hops = [self._hop(c, spec) for c in enabled]
        groups = tuple(tuple(h for h in hops if h.channel.priority == p)
                       for p in sorted({h.channel.priority for h in hops}, reverse=True))
        return Route(groups, hops[0] if len(hops) == 1 else None, spec.name)

    def _hop(self, channel: Channel, spec: ModelSpec) -> Hop:
        model = channel.upstream_model(spec)
        return Hop(channel, self.providers.for_channel(channel), model, model != spec.upstream_model)
