"""The ASGI entry for `llm-gateway serve` (every family in one app, one per worker process)."""

from __future__ import annotations


def app_factory():
    from .app import create_app

    return create_app()
