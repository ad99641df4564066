"""The ASGI entry for `llm-gateway serve` (every family in one app, one per worker process)."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

# How often a server drains parked settlements (billing.retry) and prunes usage past its retention.
HOUSEKEEPING_S = 5.0


def app_factory():
    from .. import glibc, tokens
    from ..metrics import Metrics
    from .app import create_app

    # glibc raises its mmap threshold each time it frees a large block, so later large blocks (a
    # tokenizer's tables as they load) come from the heap, where freed pages can stay pinned behind
    # live ones: RSS at rest with both encodings varied 141-151 MB from run to run. A fixed
    # threshold keeps every block of 128 KiB or more in a mapping of its own, returned whole.
    glibc.call("mallopt", glibc.M_MMAP_THRESHOLD, 128 * 1024)

    # GET /metrics: each worker counts its own requests; `serve` names one folder for its workers'
    # snapshots (GATEWAY_METRICS_DIR), so any worker answers for the whole server
    folder = os.environ.get("GATEWAY_METRICS_DIR")
    app = create_app(housekeeping=HOUSEKEEPING_S, metrics=Metrics(Path(folder) if folder else None))
    # The objects made so far (modules, the app, the catalog) live as long as the process: keep the
    # collector from walking them again and again, and let it run less often. Each request makes a
    # few thousand short-lived objects; with the default threshold (700) the collector ran several
    # times per request (measured: 7% fewer instructions per request with both changes).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    # Load the most used encoding in the background so the first request does not pay for it.
    threading.Thread(target=tokens.preload, args=("o200k_base",), daemon=True).start()
    return app
