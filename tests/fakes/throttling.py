"""DynamoDB throttling a hot item, as the service answers it, through botocore.

DynamoDB serves each partition at most 1,000 write units a second, and a transactional write costs
two units per item (up to 1 KB): one user's balance item then takes about 500 transactional writes a
second. Past that, `TransactWriteItems` is cancelled with the reason `ThrottlingError` for the hot
item. `ItemThrottle` hooks a client's `before-send` event and answers a transaction touching an item
over its rate with that very response (HTTP 400, `TransactionCanceledException`, the reasons list),
so botocore parses and retries it exactly as one from AWS, and the store's own handling is what runs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from botocore.awsrequest import AWSResponse

# what one transactional write of an item up to 1 KB costs, and what one partition gives a second
TRANSACTION_WCU_PER_ITEM = 2
PARTITION_WCU_PER_S = 1000


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any):
        yield self._data

    def read(self, *_: Any) -> bytes:
        return self._data


class ItemThrottle:
    """Token buckets per item: `rate` transactional writes a second, `burst` at once. `always`
    throttles every transaction (a store that stays throttled through every retry)."""

    def __init__(self, client: Any, rate: float = PARTITION_WCU_PER_S / TRANSACTION_WCU_PER_ITEM,
                 burst: float | None = None, always: bool = False) -> None:
        self.rate, self.burst, self.always = rate, burst if burst is not None else rate, always
        self.transactions = self.throttled = 0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        client.meta.events.register("before-send.dynamodb.TransactWriteItems", self._before_send)

    def _take(self, item: str, now: float) -> bool:
        tokens, at = self._buckets.get(item, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[item] = (tokens, now)
            return False
        self._buckets[item] = (tokens - 1, now)
        return True

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        items = json.loads(request.body)["TransactItems"]
        addresses = []
        for entry in items:
            (op,) = entry.values()
            key = op.get("Key") or {k: op["Item"][k] for k in ("pk", "sk", "user_id", "counter_id") if k in op["Item"]}
            addresses.append(op["TableName"] + json.dumps(key, sort_keys=True))
        with self._lock:
            self.transactions += 1
            now = time.monotonic()
            hot = [self.always or not self._take(a, now) for a in addresses]
            if not any(hot):
                return None
            self.throttled += 1
        reasons = [{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity of your"
                    " table or index."} if h else {"Code": "None"} for h in hot]
        body = json.dumps({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                       f"[{', '.join(r['Code'] for r in reasons)}]",
            "CancellationReasons": reasons,
        }).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "throttled"}
        return AWSResponse(request.url, 400, headers, _Body(body))
