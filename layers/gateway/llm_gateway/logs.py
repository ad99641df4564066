"""Structured logs: one JSON object per line, with the request id, never a secret.

Log records carry only what the gateway chose to put in them (key ids, never keys; no prompts, no
provider credentials), so there is nothing to scrub after the fact.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_logger = logging.getLogger("llm_gateway")
_configured = False


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            payload.update(fields)
        if record.exc_info:
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return orjson.dumps(payload, default=str).decode()


def configure(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter())
    _logger.addHandler(handler)
    _logger.setLevel(level.upper())
    _logger.propagate = False
    _configured = True


def log(msg: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    if _logger.isEnabledFor(level):
        _logger.log(level, msg, extra={"fields": fields}, exc_info=exc_info)


def now_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
