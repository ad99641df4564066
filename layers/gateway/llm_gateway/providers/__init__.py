"""Upstream adapters, created once per process and reused (pooled connections)."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import GatewayError

# Every provider a catalog entry may name: one per branch of `Providers._make`.
PROVIDERS = ("openai", "anthropic", "azure", "mock")


class Providers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        provider = self._made.get(name)
        if provider is None:
            provider = self._make(name)
            if hasattr(provider, "transport"):
                provider.transport = self.settings.http_transport
            self._made[name] = provider
        return provider

    def _make(self, name: str) -> Any:
        if name == "mock":
            from .mock import MockProvider

            return MockProvider()
        if name == "openai":
            from .openai import OpenAIProvider

            return OpenAIProvider(self.settings)
        if name == "azure":
            from .openai import AzureOpenAIProvider

            return AzureOpenAIProvider(self.settings)
        if name == "anthropic":
            try:
                from .anthropic import AnthropicProvider
            except ImportError:
                raise GatewayError("upstream_error", "Claude models are not yet supported.") from None
            return AnthropicProvider(self.settings)
        raise GatewayError("upstream_error", f"Unknown provider '{name}' in the catalog.")

    async def aclose(self) -> None:
        for provider in self._made.values():
            await provider.aclose()
        self._made.clear()
