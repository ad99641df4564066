"""Upstream adapters behind one protocol (`base.Provider`), found through one registry.

A provider maps operations ("chat", "messages", "embeddings", ...) to its own wire: URL, auth and
stream format. Adding one is its module plus one `register` line below; the catalog names it, and
its default wire format says which plans serve it (a catalog entry may override the wire).
Providers are created once per process and reused (pooled connections: `pool`); streamed answers
are read as server-sent events by `sse`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import GatewayError

if TYPE_CHECKING:
    from ..catalog.channels import Channel


@dataclass(frozen=True)
class Registration:
    factory: str  # "module:Class", imported on first use so a function loads only what it calls
    wire: str  # the API format its chat models speak by default: "openai" or "anthropic"


REGISTRY: dict[str, Registration] = {}


def register(name: str, factory: str, wire: str) -> None:
    REGISTRY[name] = Registration(factory, wire)


register("openai", "llm_gateway.providers.openai:OpenAIProvider", "openai")
register("azure", "llm_gateway.providers.openai:AzureOpenAIProvider", "openai")
register("anthropic", "llm_gateway.providers.anthropic:AnthropicProvider", "anthropic")
register("bedrock", "llm_gateway.providers.bedrock:BedrockProvider", "anthropic")
register("mock", "llm_gateway.providers.mock:MockProvider", "openai")
register("google-cse", "llm_gateway.providers.google_cse:GoogleCSEProvider", "openai")
register("serper", "llm_gateway.providers.serper:SerperProvider", "openai")
register("azure-speech", "llm_gateway.providers.azure_speech:AzureSpeechProvider", "openai")
register("midjourney", "llm_gateway.providers.midjourney:MidjourneyProvider", "openai")

# Every provider a catalog entry may name.
PROVIDERS = tuple(REGISTRY)


@lru_cache(maxsize=64)
def offers(provider: str, operation: str) -> bool:
    """Whether the provider's upstream serves `operation` itself (its class's `paths` or `operations`)."""
    registration = REGISTRY.get(provider)
    if registration is None:
        return False
    module, _, cls = registration.factory.partition(":")
    adapter = getattr(importlib.import_module(module), cls)
    served = getattr(adapter, "paths", None) or getattr(adapter, "operations", None) or ()
    return operation in served


def default_wire(provider: str) -> str:
    registration = REGISTRY.get(provider)
    return registration.wire if registration else "openai"


class Providers:
    """This process's provider instances, made on first use from the registry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Any] = {}
        self._retired: list[Any] = []  # instances of changed channels, closed with the rest

    def get(self, name: str) -> Any:
        provider = self._made.get(name)
        if provider is None:
            registration = REGISTRY.get(name)
            if registration is None:
                raise GatewayError("upstream_error", f"Unknown provider '{name}' in the catalog.")
            module, _, cls = registration.factory.partition(":")
            provider = getattr(importlib.import_module(module), cls)(self.settings)
            self._made[name] = provider
        return provider

    def for_channel(self, channel: Channel) -> Any:
        """The provider instance of a stored channel: its class made over the settings the channel
        gives (address, credential by name, region, API version), each as the setting the class reads
        (its `channel_settings`); one instance per channel definition, so a changed channel gets a
        fresh one and an unchanged one keeps its connections."""
        key = f"channel:{channel.name}:{hash(channel)}"
        provider = self._made.get(key)
        if provider is None:
            registration = REGISTRY[channel.provider]
            module, _, cls_name = registration.factory.partition(":")
            cls = getattr(importlib.import_module(module), cls_name)
            overlay: dict[str, Any] = {}
            for attr, setting in getattr(cls, "channel_settings", {}).items():
                value = getattr(channel, attr)
                if value and attr == "api_key_env":
                    value = self.settings.secret(value) or ""  # the credential, read here, never stored
                if value:
                    overlay[setting] = value
            provider = cls(replace(self.settings, env={**self.settings.env, **overlay}))
            for old in [k for k in self._made if k.startswith(f"channel:{channel.name}:")]:
                self._retired.append(self._made.pop(old))
            self._made[key] = provider
        return provider

    async def aclose(self) -> None:
        for provider in self._retired:
            await provider.aclose()
        self._retired.clear()
        for provider in self._made.values():
            await provider.aclose()
        self._made.clear()
