"""Store round trips per warm chat request, counted at the Store protocol and at DynamoDB's API.

Serves the chat family in-process (ASGI, no sockets) over a DynamoDB store (moto, in-process), with a
counting wrapper around the Store and a counter on the boto3 client's calls. One request warms the
process (key, user and catalog cached); then warm requests, streaming and not, are counted one by
one. Prints one JSON object.

Target: at most 2 writing calls per warm request (admission with its reservation; settlement with
its usage record) and no reads beyond the cached key and user. And a Midjourney `query` of a task that
is final costs at most one store read (the task itself; nothing is fetched upstream or written).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "gateway"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "layers" / "tiktoken"))
for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
    os.environ[name] = value
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)

WARM_REQUESTS = 10
WRITES = {"admit", "settle", "create_user", "update_user", "add_balance", "create_key", "update_key",
          "delete_key", "set_model_override", "set_tier_override", "init"}
DYNAMODB_WRITES = {"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}


class CountingStore:
    """Forwards every Store call and counts it by method name."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return call


async def _measure() -> dict:
    import httpx

    from llm_gateway import accounts
    from llm_gateway.config import Settings
    from llm_gateway.http.app import create_app
    from llm_gateway.runtime import Runtime
    from llm_gateway.store.base import TaskRecord
    from llm_gateway.store.dynamodb import DynamoDBStore

    store = DynamoDBStore("bench")
    store.init()
    api_calls: Counter[str] = Counter()
    store._client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: api_calls.update([model.name])
    )
    counting = CountingStore(store)
    runtime = Runtime.build(Settings(store_url="dynamodb://bench", cache_ttl=5.0), counting)
    accounts.create_user(store, "bench", balance=10_000_000)
    _, key = accounts.issue_key(store, "bench")
    store.set_model_override("bench-model", {"provider": "mock", "input": "1", "output": "2"})
    app = create_app(families=["chat", "tasks"], runtime=runtime)
    done = TaskRecord(task_id=store.next_task_id(), user_id="bench", key_id="key_bench", action="IMAGINE",
                      status="SUCCESS", progress=100, prompt="a final task", submit_time=1.0, updated_at=2.0,
                      finish_time=2.0, provider="mock", upstream_id="up-1")
    store.create_task(done)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "count the round trips"}]}
    per_request: dict[str, list[dict]] = {"non_streaming": [], "streaming": []}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
        for mode, stream in (("non_streaming", False), ("streaming", True)):
            for _ in range(WARM_REQUESTS):
                counting.calls.clear()
                api_calls.clear()
                r = await client.post("/v1/chat/completions", json={**body, "stream": stream}, headers=headers)
                assert r.status_code == 200, r.text
                per_request[mode].append({"store": dict(counting.calls), "dynamodb": dict(api_calls)})
        task_queries = []
        for _ in range(WARM_REQUESTS):
            counting.calls.clear()
            api_calls.clear()
            r = await client.post("/api/v1/ai/draw/mj/query", json={"taskId": done.task_id}, headers=headers)
            assert r.status_code == 200 and r.json()["data"]["status"] == "SUCCESS", r.text
            task_queries.append({"store": dict(counting.calls), "dynamodb": dict(api_calls)})
    summary = {}
    for mode, samples in per_request.items():
        writes = [sum(n for m, n in s["store"].items() if m in WRITES) for s in samples]
        reads = [sum(n for m, n in s["store"].items() if m not in WRITES) for s in samples]
        api_writes = [sum(n for m, n in s["dynamodb"].items() if m in DYNAMODB_WRITES) for s in samples]
        api_reads = [sum(n for m, n in s["dynamodb"].items() if m not in DYNAMODB_WRITES) for s in samples]
        summary[mode] = {
            "store_writes_max": max(writes), "store_reads_max": max(reads),
            "dynamodb_write_calls_max": max(api_writes), "dynamodb_read_calls_max": max(api_reads),
            "example": samples[-1],
            "within_target": max(writes) <= 2 and max(reads) == 0,
        }
    reads = [sum(n for m, n in s["store"].items() if m not in WRITES) for s in task_queries]
    api_reads = [sum(n for m, n in s["dynamodb"].items() if m not in DYNAMODB_WRITES) for s in task_queries]
    writes = [sum(n for m, n in s["dynamodb"].items() if m in DYNAMODB_WRITES) for s in task_queries]
    summary["final_task_query"] = {
        "store_reads_max": max(reads), "dynamodb_read_calls_max": max(api_reads),
        "dynamodb_write_calls_max": max(writes), "example": task_queries[-1],
        "within_target": max(reads) <= 1 and max(api_reads) <= 1 and max(writes) == 0,
    }
    return {"warm_requests_per_mode": WARM_REQUESTS, "cache_ttl_s": 5.0, **summary}


def main() -> None:
    from moto import mock_aws

    with mock_aws():
        result = asyncio.run(_measure())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
