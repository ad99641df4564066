"""One hot user against a DynamoDB that throttles like the real one: is every charge accounted for?

A moto DynamoDB on 127.0.0.1 (one request at a time, so each transaction is atomic) with
tests/fakes/throttling.py answering a transaction that touches an item over its write budget the way
DynamoDB does (cancelled, reason ThrottlingError), parsed and retried by botocore. The gateway runs
in-process over that store with a fake OpenAI upstream; one user's key sends a burst at a fixed
concurrency. Afterwards parked settlements are drained (what the settlement function does on AWS)
and the books are checked:

- lost charges: answered 200 with no usage record; doubled: more records than answers;
- the balance moved by exactly the recorded costs, and no reservation is left held on the key;
- the statuses: 200, or 503 with Retry-After when the store stayed throttled before the upstream call;
  never another 5xx.

moto serves a few hundred calls a second, far below DynamoDB's per-partition 1,000 write units/s, so
the item budget is scaled down (`--item-rate`) to make the burst hot. The ceiling of one user on real
DynamoDB is computed, not measured: see `ceiling` in the output.

    python bench/hot_user.py [--requests 300] [--concurrency 32] [--item-rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "gateway"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "layers" / "tiktoken"))

from tests.dynamo import MotoServer  # noqa: E402
from tests.fakes.throttling import PARTITION_WCU_PER_S, TRANSACTION_WCU_PER_ITEM, ItemThrottle  # noqa: E402

DEADLINE_S = 300  # the whole run stops by then, whatever happens


async def burst(url: str, key: str, model: str, requests: int, concurrency: int) -> list:
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 20}
    queue = list(range(requests))
    replies = []
    deadline = time.monotonic() + DEADLINE_S

    async with httpx.AsyncClient(timeout=120) as client:
        async def worker():
            while queue and time.monotonic() < deadline:
                queue.pop()
                r = await client.post(url + "/v1/chat/completions", json=body,
                                      headers={"Authorization": f"Bearer {key}"})
                replies.append(r)

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return replies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--item-rate", type=float, default=40.0,
                        help="transactional writes per second one item takes (DynamoDB: about 500)")
    args = parser.parse_args()

    moto = MotoServer().start()
    os.environ.update(moto.env())
    from llm_gateway import accounts
    from llm_gateway.billing import retry
    from llm_gateway.http.app import create_app
    from llm_gateway.money import to_micros
    from llm_gateway.runtime import Runtime
    from llm_gateway.store.dynamodb import DynamoDBStore
    from tests.conftest import gateway_settings
    from tests.fakes.openai_upstream import FakeOpenAI
    from tests.fakes.server import ServerThread

    fake = FakeOpenAI(record=False)
    upstream = ServerThread(fake.app()).start()
    fake.url = upstream.url
    store = DynamoDBStore(f"hot{int(time.time())}")
    store.init()
    settings = gateway_settings(f"dynamodb://{store.prefix}", upstream.url, log_level="ERROR")
    runtime = Runtime.build(settings, store)
    server = ServerThread(create_app(runtime=runtime)).start()
    model = "gpt-4o-mini"
    store.set_model_override(model, {"rpm": {"regular": 10_000_000, "vip": 10_000_000, "premium": 10_000_000}})
    user = "hot-user"
    accounts.create_user(store, user, balance=to_micros("1000"))
    key_row, key = accounts.issue_key(store, user)
    throttle = ItemThrottle(store._client, rate=args.item_rate, burst=max(1.0, args.item_rate / 10))

    started = time.perf_counter()
    replies = asyncio.run(burst(server.url, key, model, args.requests, args.concurrency))
    elapsed = time.perf_counter() - started
    parked_after_burst = len(store.parked_settlements(1000))
    drained = retry.drain(store, 1000)

    statuses = collections.Counter(r.status_code for r in replies)
    answered = {r.headers["x-request-id"] for r in replies if r.status_code == 200}
    records = []
    cursor = None
    while True:
        page = store.list_usage(user, limit=100, cursor=cursor)
        records += page.records
        cursor = page.next_cursor
        if not cursor:
            break
    recorded = collections.Counter(rec.request_id for rec in records)
    charged = sum(rec.cost for rec in records)
    key_after = store.get_key(key_row.key_id)
    out = {
        "requests": len(replies),
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "answered_per_s": round(statuses[200] / elapsed, 1),
        "statuses": dict(sorted(statuses.items())),
        "retry_after_on_503": sorted({r.headers.get("retry-after") for r in replies if r.status_code == 503}),
        "item_rate_per_s": args.item_rate,
        "transactions": throttle.transactions,
        "transactions_throttled": throttle.throttled,
        "settlements_parked": parked_after_burst,
        "settlements_drained_after": drained,
        "lost_charges": len(answered - set(recorded)),
        "doubled_charges": sum(n - 1 for n in recorded.values() if n > 1),
        "charges_without_answer": len(set(recorded) - answered),
        "balance_matches_records": store.get_user(user).balance == to_micros("1000") - charged,
        "held_left_on_key": key_after.held,
        "other_5xx": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "ceiling": {
            "note": "one user's requests/s on real DynamoDB: each answered request writes the user's "
                    "balance item in two transactions (admission, settlement), 2 write units per item each",
            "partition_wcu_per_s": PARTITION_WCU_PER_S,
            "wcu_per_request_on_the_user_item": 2 * TRANSACTION_WCU_PER_ITEM,
            "requests_per_s": PARTITION_WCU_PER_S // (2 * TRANSACTION_WCU_PER_ITEM),
        },
    }
    server.stop()
    upstream.stop()
    moto.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
