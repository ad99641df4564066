"""The ASGI entry for `llm-gateway serve` (every family in one app, one per worker process)."""

from __future__ import annotations

import threading


def app_factory():
    from .. import tokens
    from .app import create_app

    app = create_app()
    # Load the most used encoding in the background so the first request does not pay for it.
    threading.Thread(target=tokens.preload, args=("o200k_base",), daemon=True).start()
    return app
