"""DynamoDB adapter: the store on AWS, with the same guarantees as SQLite through conditional writes.

Tables (`<prefix>` from `dynamodb://<prefix>`; all on-demand, created by `init` or by the template):

| table | key | items |
|---|---|---|
| `<prefix>-users` | `user_id` | one per user: tier, balance, membership_expire_at, created_at, key_count |
| `<prefix>-keys` | `pk`, `sk` | a key at (`user#<user_id>`, `key#<key_id>`); pointers (`hash#<sha256>`, `hash`) and (`keyid#<key_id>`, `keyid`) holding its user_id and key_id |
| `<prefix>-counters` | `counter_id` | one per rate-limit counter: window_start, hits; TTL `expires_at`. Also the search answer cache: (`cache#<hash>`) holding `answer` (JSON text) and `stored_at`, TTL `expires_at` |
| `<prefix>-usage` | `pk`, `sk` | a record at (`user#<user_id>`, `<created_at:020.6f>#<request_id>`), its non-token `units` a map (absent when empty); a settlement guard at (`req#<request_id>`, `req`) with TTL `expires_at`. Also the responses (API.md 3.8): (`resp#<id>`, `head`) holding `user_id`, `model`, `created_at` and, for a translated model, the document zlib-compressed in `doc` with `parts`, the parts past the first at (`resp#<id>`, `part#<n>`) in `data`, 350 KB each (an item holds at most 400 KB); all with TTL `expires_at` (30 days) |
| `<prefix>-catalog` | `pk`, `sk` | an override at (`models`/`tiers`, name) with one `f_<field>` JSON attribute per field; the version at (`meta`, `version`) |
| `<prefix>-tasks` | `pk`, `sk` | a task at (`user#<user_id>`, `task#<task_id:020d>`): `rank` and `progress` (what its conditional write compares) and one `f_<field>` JSON attribute per field; a pointer (`up#<provider>#<upstream id>`, `up`) to it; one (`open`, `task#<task_id:020d>`) per task until the sweep finds it final; the id sequence at (`seq`, `task`) |

Why this shape: every read the gateway makes per request is a strongly consistent `GetItem` (keys
and users — revocation must not wait for a replica), and every list is a `Query` on a partition
(keys of a user, usage of a user newest-first), so no secondary index with eventually consistent
reads sits on a path where a fresh write must be visible. Money moves only inside
`TransactWriteItems`:

- `admit`: one transaction holding a conditional update per rate-limit counter and the reservation
  (user balance ≥ reserve; the key's `fee_left` ≥ reserve, kept as an attribute of its own because
  conditions cannot do arithmetic). A counter update either opens a window (none open) or adds a hit
  (window open, under the limit); which one is guessed from the last window this process saw and
  corrected from the cancellation reason's old item, which also says whether the counter is full
  (429, Retry-After from its stored window start) or the funds are short (402). Cancelled means
  nothing was written, so a refused request neither counts nor holds money.
- `settle`: one transaction putting the usage record and a guard item keyed by the request id
  (`attribute_not_exists`), and moving the user's balance and the key's totals: a replay is
  cancelled by the guard and changes nothing.

Transaction conflicts and throttling are retried with bounded exponential backoff. TTL attributes
only clean up: expired counters are recognised by their window start, not by their absence.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import fields as dc_fields
from functools import partial
from typing import Any

from .base import (
    CACHE_MAX_AGE,
    CACHE_MAX_BYTES,
    FINAL_RANK,
    KEY_FIELDS,
    RESPONSE_TTL,
    TASK_FIELDS,
    TASK_RANKS,
    USER_FIELDS,
    Admission,
    AlreadyExists,
    CachedAnswer,
    Counter,
    Key,
    KeyCapReached,
    NotFound,
    RateState,
    StoreBusy,
    StoredResponse,
    StoreError,
    TaskRecord,
    UsageGroup,
    UsagePage,
    UsageRecord,
    UsageSummary,
    User,
    check_fields,
    check_usage_group,
    summary_of,
    tightest,
    utc_day,
)
from .cursor import UsageQuery

__all__ = ["DynamoDBStore", "TABLES"]

# table suffix -> (key schema [(name, type)], TTL attribute or None)
TABLES: dict[str, tuple[list[str], str | None]] = {
    "users": (["user_id"], None),
    "keys": (["pk", "sk"], None),
    "counters": (["counter_id"], "expires_at"),
    "usage": (["pk", "sk"], "expires_at"),
    "catalog": (["pk", "sk"], None),
    "tasks": (["pk", "sk"], None),
}

_CACHE_PREFIX = "cache#"
_RESPONSE_PREFIX = "resp#"
_PART_BYTES = 350_000  # a compressed response's part per item, under DynamoDB's 400 KB item limit
_GUARD_TTL = 7 * 86_400.0  # a settlement replay comes within a request's lifetime; keep guards a week
_COUNTER_TTL_SLACK = 300.0
_RETRYABLE = {
    "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded",
    "TransactionConflictException", "TransactionInProgressException", "ThrottlingException",
    "ProvisionedThroughputExceededException", "RequestLimitExceededException", "InternalServerError",
}
_MAX_PAGE = 1000  # the most items one bounded usage read asks for; DynamoDB stops at 1 MB anyway
_MAX_ATTEMPTS = 10  # conflicts on a hot counter clear within a few backoffs (≤ 0.5 s each)
_PARKED = "parked"  # the usage table's partition of settlements waiting for a retry (billing.retry)
_THROTTLED = {
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionConflictException", "TransactionInProgressException",
}


class DynamoDBStore:
    """The Store protocol over DynamoDB; one botocore client per store (one store per process)."""

    def __init__(self, prefix: str, client: Any = None, usage_retention_s: float = 0.0) -> None:
        if not prefix:
            raise ValueError("dynamodb:// needs a table prefix, e.g. dynamodb://llm-gateway")
        self.prefix = prefix
        self.tables = {name: f"{prefix}-{name}" for name in TABLES}
        self._client = _Throttled(client or _new_client())
        self._usage_retention_s = usage_retention_s  # 0: usage records are kept
        # counter_id -> window start this process last saw: picks the likelier update first
        self._windows: dict[str, float] = {}

    # set-up ----------------------------------------------------------------------------------
    def init(self) -> None:
        """Create missing tables (on-demand billing, TTL where used) and wait until they are active."""
        c = self._client
        created = []
        for name, (keys, _) in TABLES.items():
            table = self.tables[name]
            try:
                c.describe_table(TableName=table)
                continue
            except c.exceptions.ResourceNotFoundException:
                pass
            try:
                c.create_table(
                    TableName=table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
                    KeySchema=[
                        {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"} for i, k in enumerate(keys)
                    ],
                )
            except c.exceptions.ResourceInUseException:
                pass  # created concurrently by another operator
            created.append(name)
        for name in created:
            c.get_waiter("table_exists").wait(TableName=self.tables[name], WaiterConfig={"Delay": 1})
        for name, (_, ttl) in TABLES.items():
            if ttl is None:
                continue
            status = c.describe_time_to_live(TableName=self.tables[name])["TimeToLiveDescription"]
            if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
                continue
            c.update_time_to_live(
                TableName=self.tables[name], TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )

    # users -----------------------------------------------------------------------------------
    def create_user(self, user: User) -> User:
        item = _encode({**user.__dict__, "key_count": 0})
        try:
            self._client.put_item(
                TableName=self.tables["users"], Item=item, ConditionExpression="attribute_not_exists(user_id)"
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise AlreadyExists(f"user {user.user_id} exists") from None
        return _decode(User, item)

    def get_user(self, user_id: str) -> User | None:
        item = self._get("users", {"user_id": _s(user_id)})
        return _decode(User, item) if item else None

    def update_user(self, user_id: str, **fields: Any) -> User:
        check_fields(fields, USER_FIELDS)
        if not fields:
            user = self.get_user(user_id)
            if user is None:
                raise NotFound(f"no user {user_id}")
            return user
        expr = _Update(fields)
        attrs = self._update("users", {"user_id": _s(user_id)}, expr, "attribute_exists(user_id)",
                             NotFound(f"no user {user_id}"))
        return _decode(User, attrs)

    def add_balance(self, user_id: str, micros: int) -> User:
        expr = _Update()
        expr.add("balance", micros)
        attrs = self._update("users", {"user_id": _s(user_id)}, expr, "attribute_exists(user_id)",
                             NotFound(f"no user {user_id}"))
        return _decode(User, attrs)

    def count_users(self) -> int:
        total = 0
        for page in self._client.get_paginator("scan").paginate(
            TableName=self.tables["users"], Select="COUNT", ConsistentRead=True
        ):
            total += page["Count"]
        return total

    def list_users(self) -> list[User]:
        users = [
            _decode(User, item)
            for page in self._client.get_paginator("scan").paginate(TableName=self.tables["users"], ConsistentRead=True)
            for item in page["Items"]
        ]
        return sorted(users, key=lambda u: u.user_id)

    # keys ------------------------------------------------------------------------------------
    def create_key(self, key: Key, max_keys: int | None = None) -> Key:
        stored = Key(**{**key.__dict__, "used_times": 0, "used_fee": 0, "held": 0})
        item = {
            **_key_address(key.user_id, key.key_id),
            **_encode(stored.__dict__),
            "spent": _n(0),
            "fee_left": _n(key.max_fee or 0),
        }
        cap = "attribute_exists(user_id)"
        values: dict[str, Any] = {":one": _n(1)}
        if max_keys is not None:
            cap += " AND key_count < :max"
            values[":max"] = _n(max_keys)
        pointer = {"user_id": _s(key.user_id), "key_id": _s(key.key_id)}
        items = [
            {"Update": {
                "TableName": self.tables["users"], "Key": {"user_id": _s(key.user_id)},
                "UpdateExpression": "ADD key_count :one", "ConditionExpression": cap,
                "ExpressionAttributeValues": values, "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            _put(self.tables["keys"], item, "attribute_not_exists(pk)"),
            _put(self.tables["keys"], {**_hash_address(key.key_hash), **pointer}, "attribute_not_exists(pk)"),
            _put(self.tables["keys"], {**_id_address(key.key_id), **pointer}, "attribute_not_exists(pk)"),
        ]
        reasons = self._transact(items)
        if reasons is not None:
            if _failed(reasons[0]):
                if "Item" not in reasons[0]:
                    raise NotFound(f"no user {key.user_id}")
                raise KeyCapReached(f"user {key.user_id} already holds {reasons[0]['Item']['key_count']['N']} keys")
            raise AlreadyExists("key exists")
        return stored

    def get_key_by_hash(self, key_hash: str) -> Key | None:
        pointer = self._get("keys", _hash_address(key_hash))
        return self._key_at(pointer)

    def get_key(self, key_id: str) -> Key | None:
        return self._key_at(self._get("keys", _id_address(key_id)))

    def list_keys(self, user_id: str) -> list[Key]:
        items = self._query(
            "keys", "pk = :pk AND begins_with(sk, :kind)", {":pk": _s(f"user#{user_id}"), ":kind": _s("key#")}
        )
        return sorted((_decode(Key, i) for i in items), key=lambda k: (k.created_at, k.key_id))

    def update_key(self, key_id: str, **fields: Any) -> Key:
        check_fields(fields, KEY_FIELDS)
        pointer = self._get("keys", _id_address(key_id))
        if pointer is None:
            raise NotFound(f"no key {key_id}")
        address = _key_address(pointer["user_id"]["S"], key_id)
        if not fields:
            key = self._key_at(pointer)
            if key is None:
                raise NotFound(f"no key {key_id}")
            return key
        expr = _Update(fields)
        if "max_fee" in fields:
            # fee_left = max_fee - spent, the quantity admit's condition compares
            expr.sets.append("fee_left = :fee_cap - spent")
            expr.values[":fee_cap"] = _n(fields["max_fee"] or 0)
        attrs = self._update("keys", address, expr, "attribute_exists(pk)", NotFound(f"no key {key_id}"))
        return _decode(Key, attrs)

    def delete_key(self, key_id: str) -> None:
        key = self.get_key(key_id)
        if key is None:
            raise NotFound(f"no key {key_id}")
        table = self.tables["keys"]
        reasons = self._transact([
            {"Delete": {"TableName": table, "Key": _key_address(key.user_id, key_id),
                        "ConditionExpression": "attribute_exists(pk)"}},
            {"Delete": {"TableName": table, "Key": _hash_address(key.key_hash)}},
            {"Delete": {"TableName": table, "Key": _id_address(key_id)}},
            {"Update": {"TableName": self.tables["users"], "Key": {"user_id": _s(key.user_id)},
                        "UpdateExpression": "ADD key_count :minus", "ConditionExpression": "attribute_exists(user_id)",
                        "ExpressionAttributeValues": {":minus": _n(-1)}}},
        ])
        if reasons is not None:
            raise NotFound(f"no key {key_id}")

    # admission and billing -------------------------------------------------------------------
    def admit(
        self,
        user_id: str,
        key_id: str | None,
        counters: list[Counter],
        reserve: int,
        now: float,
    ) -> Admission:
        opening = [self._window_open_guess(c, now) is False for c in counters]
        hold_key = key_id is not None and reserve > 0
        for _ in range(_MAX_ATTEMPTS):
            items = [self._counter_item(c, now, opens) for c, opens in zip(counters, opening, strict=True)]
            if reserve > 0:
                items.append({"Update": {
                    "TableName": self.tables["users"], "Key": {"user_id": _s(user_id)},
                    "UpdateExpression": "SET balance = balance - :r", "ConditionExpression": "balance >= :r",
                    "ExpressionAttributeValues": {":r": _n(reserve)},
                }})
            if hold_key:
                items.append({"Update": {
                    "TableName": self.tables["keys"], "Key": _key_address(user_id, key_id),  # type: ignore[arg-type]
                    "UpdateExpression": "ADD held :r, spent :r, fee_left :neg",
                    "ConditionExpression": "attribute_exists(pk) AND (attribute_not_exists(max_fee) OR fee_left >= :r)",
                    "ExpressionAttributeValues": {":r": _n(reserve), ":neg": _n(-reserve)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }})
            if not items:
                return Admission(True)
            reasons = self._transact(items)
            if reasons is None:
                states = []
                for counter, opens in zip(counters, opening, strict=True):
                    if opens:
                        self._windows[counter.counter_id] = now
                    # hits left are known only in a window this request opened (no read-back)
                    start = self._windows.get(counter.counter_id, now)
                    states.append(RateState(counter.limit, counter.limit - 1 if opens else None,
                                            start + counter.window))
                return Admission(True, rate=tightest(states))
            # Rate before funds, as the contract orders them; a wrong guess about a window is retried.
            for i, counter in enumerate(counters):
                if not _failed(reasons[i]):
                    continue
                old = reasons[i].get("Item")
                if old is None and opening[i]:
                    old = self._get("counters", {"counter_id": _s(counter.counter_id)})
                if old is None:
                    opening[i] = True
                    continue
                start = float(old["window_start"]["N"])
                self._windows[counter.counter_id] = start
                if now >= start + counter.window:
                    opening[i] = True
                elif int(old["hits"]["N"]) < counter.limit:
                    opening[i] = False
                else:
                    return Admission(False, "rate", max(1, math.ceil(start + counter.window - now)),
                                     counter.counter_id)
            n = len(counters)
            if reserve > 0 and _failed(reasons[n]):
                return Admission(False, "funds_user")
            if hold_key and _failed(reasons[-1]):
                if "Item" not in reasons[-1]:
                    hold_key = False  # the key is gone; like SQLite, the user's balance still decides
                    continue
                return Admission(False, "funds_key")
        raise StoreError("admission did not settle after repeated retries")

    def settle(self, record: UsageRecord) -> bool:
        r = record
        delta = r.reserved - r.cost
        usage = self.tables["usage"]
        guard = {"pk": _s(f"req#{r.request_id}"), "sk": _s("req"), "expires_at": _n(int(r.created_at + _GUARD_TTL))}
        item = {"pk": _s(f"user#{r.user_id}"), "sk": _s(_usage_sort_key(r.created_at, r.request_id)),
                **_encode(r.as_dict())}
        if self._usage_retention_s:
            item["expires_at"] = _n(int(r.created_at + self._usage_retention_s))
        with_user, with_key = True, True
        for _ in range(_MAX_ATTEMPTS):
            items = [_put(usage, guard, "attribute_not_exists(pk)"), _put(usage, item)]
            if with_user and delta:
                items.append({"Update": {
                    "TableName": self.tables["users"], "Key": {"user_id": _s(r.user_id)},
                    "UpdateExpression": "ADD balance :d", "ConditionExpression": "attribute_exists(user_id)",
                    "ExpressionAttributeValues": {":d": _n(delta)},
                }})
            if with_key:
                items.append({"Update": {
                    "TableName": self.tables["keys"], "Key": _key_address(r.user_id, r.key_id),
                    "UpdateExpression": "ADD held :unheld, used_fee :cost, used_times :one, spent :spent,"
                                        " fee_left :d SET used_at = :t",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": {
                        ":unheld": _n(-r.reserved), ":cost": _n(r.cost), ":one": _n(1), ":spent": _n(-delta),
                        ":d": _n(delta), ":t": _n(r.created_at),
                    },
                }})
            reasons = self._transact(items)
            if reasons is None:
                return True
            if _failed(reasons[0]):
                return False
            if with_user and delta and _failed(reasons[2]):
                with_user = False  # no such user: record the usage all the same, as SQLite does
            if with_key and _failed(reasons[-1]):
                with_key = False
        raise StoreBusy("settlement did not complete after repeated retries")

    def park_settlement(self, record: UsageRecord) -> None:
        self._client.put_item(TableName=self.tables["usage"], Item={
            "pk": _s(_PARKED), "sk": _s(record.request_id), "parked_at": _n(time.time()),
            "record": _s(json.dumps(record.as_dict())),
        })

    def parked_settlements(self, limit: int = 100) -> list[UsageRecord]:
        items = self._client.query(
            TableName=self.tables["usage"], KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": _s(_PARKED)}, ConsistentRead=True, Limit=limit,
        ).get("Items", [])
        records = sorted(items, key=lambda i: float(i["parked_at"]["N"]))
        return [UsageRecord(**json.loads(i["record"]["S"])) for i in records]

    def unpark_settlement(self, request_id: str) -> None:
        self._client.delete_item(TableName=self.tables["usage"], Key={"pk": _s(_PARKED), "sk": _s(request_id)})

    def list_usage(
        self,
        user_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        offset: int = 0,
        limit: int = 20,
        cursor: str | None = None,
        with_totals: bool = True,
    ) -> UsagePage:
        """Newest first. Totals need every record in the range, so with them this reads the whole
        range (one Query page per 1 MB, each billed as read) and cuts the page from it. Without them
        it reads only up to the page: Queries with `Limit`, starting after the cursor's key."""
        q = UsageQuery(user_id, since, until, model, offset, limit, cursor)
        values, filter = _usage_range(user_id, since, until, q.model)
        start = None if q.start_after is None else {"pk": values[":pk"], "sk": _s(_usage_sort_key(*q.start_after))}
        reading = partial(self._query, "usage", _USAGE_RANGE, values, filter=filter, newest_first=True)
        if not with_totals:
            items = list(reading(start=start, at_most=offset + q.want))[offset:]
            return q.page([_decode(UsageRecord, i) for i in items], None)
        items = list(reading())
        records = [_decode(UsageRecord, i) for i in items]
        totals = (
            len(records),
            sum(r.cost for r in records),
            sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens for r in records),
            sum(r.output_tokens for r in records),
        )
        first = 0 if start is None else next(
            (n for n, i in enumerate(items) if i["sk"]["S"] < start["sk"]["S"]), len(items))
        return q.page(records[first + offset:first + offset + q.want], totals)

    def summarise_usage(
        self,
        user_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        group: str = "day",
    ) -> UsageSummary:
        """DynamoDB cannot sum, so this reads the range's records (the sort key starts with the
        time, so only those), projected to the attributes it sums, and sums them here."""
        check_usage_group(group)
        values, filter = _usage_range(user_id, since, until, model or None)
        groups: dict[str, UsageGroup] = {}
        for item in self._query("usage", _USAGE_RANGE, values, filter=filter, projection=_SUMMED):
            key = utc_day(float(item["created_at"]["N"])) if group == "day" else item["model"]["S"]
            g = groups.setdefault(key, UsageGroup(key))
            count = {name: int(item[name]["N"]) if name in item else 0 for name in _SUMMED[2:]}
            g.requests += 1
            g.input_tokens += count["input_tokens"] + count["cache_read_tokens"] + count["cache_write_tokens"]
            g.output_tokens += count["output_tokens"]
            g.cost += count["cost"]
        return summary_of([groups[k] for k in sorted(groups)])

    # search answer cache (items of the counters table: it has the TTL, and every function that
    # admits a call may already read and write it) ------------------------------------------------
    def get_cached(self, cache_key: str) -> CachedAnswer | None:
        item = self._get("counters", {"counter_id": _s(_CACHE_PREFIX + cache_key)})
        if not item or "answer" not in item:
            return None
        stored_at = float(item["stored_at"]["N"])
        if stored_at + CACHE_MAX_AGE <= time.time():  # TTL deletion lags: expiry is decided here
            return None
        return CachedAnswer(item["answer"]["S"], stored_at)

    def put_cached(self, cache_key: str, answer: str, stored_at: float) -> bool:
        if len(answer.encode()) > CACHE_MAX_BYTES:
            return False
        self._client.put_item(TableName=self.tables["counters"], Item={
            "counter_id": _s(_CACHE_PREFIX + cache_key), "answer": _s(answer), "stored_at": _n(stored_at),
            "expires_at": _n(int(stored_at + CACHE_MAX_AGE) + 1),
        })
        return True

    # asynchronous tasks ----------------------------------------------------------------------
    # A task lives in its owner's partition, so reading it needs its owner (one GetItem, and another
    # user's id is simply not there) and a user's listing is one Query, newest first.
    def next_task_id(self) -> int:
        attrs = self._client.update_item(
            TableName=self.tables["tasks"], Key={"pk": _s("seq"), "sk": _s("task")},
            UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": _n(1)}, ReturnValues="UPDATED_NEW",
        )["Attributes"]
        return int(attrs["n"]["N"])

    def create_task(self, task: TaskRecord) -> None:
        table = self.tables["tasks"]
        item = {**_task_address(task.user_id, task.task_id), "rank": _n(task.rank), "progress": _n(task.progress),
                **{"f_" + k: _s(json.dumps(v)) for k, v in task.__dict__.items()}}
        pointer = {"pk": _s(f"up#{task.provider}#{task.upstream_id}"), "sk": _s("up"),
                   "user_id": _s(task.user_id), "task_id": _n(task.task_id)}
        opened = {**_open_task_address(task.task_id), "user_id": _s(task.user_id), "task_id": _n(task.task_id)}
        if self._transact([_put(table, item, "attribute_not_exists(pk)"),
                           _put(table, pointer, "attribute_not_exists(pk)"), _put(table, opened)]) is not None:
            raise AlreadyExists(f"task {task.task_id} exists")

    def get_task(self, user_id: str, task_id: int) -> TaskRecord | None:
        item = self._get("tasks", _task_address(user_id, task_id))
        return _task(item) if item else None

    def find_task(self, provider: str, upstream_id: str) -> TaskRecord | None:
        pointer = self._get("tasks", {"pk": _s(f"up#{provider}#{upstream_id}"), "sk": _s("up")})
        if pointer is None:
            return None
        return self.get_task(pointer["user_id"]["S"], int(pointer["task_id"]["N"]))

    def list_tasks(self, user_id: str, *, offset: int = 0, limit: int = 10) -> tuple[int, list[TaskRecord]]:
        condition = "pk = :pk AND begins_with(sk, :task)"
        values = {":pk": _s(f"user#{user_id}"), ":task": _s("task#")}
        total = 0
        for page in self._client.get_paginator("query").paginate(
            TableName=self.tables["tasks"], KeyConditionExpression=condition, ExpressionAttributeValues=values,
            Select="COUNT", ConsistentRead=True,
        ):
            total += page["Count"]
        items = list(self._query("tasks", condition, values, newest_first=True, at_most=offset + limit))[offset:]
        return total, [_task(i) for i in items]

    def advance_task(self, user_id: str, task_id: int, status: str, progress: int,
                     changes: dict[str, Any]) -> TaskRecord | None:
        check_fields(changes, TASK_FIELDS)
        rank = TASK_RANKS[status]
        expr = _Update()
        expr.set("rank", rank)
        expr.set("progress", progress)
        for name, value in {**changes, "status": status, "progress": progress}.items():
            expr.set("f_" + name, json.dumps(value))
        params = expr.params()
        params["ExpressionAttributeValues"].update({":rank": _n(rank), ":p": _n(progress), ":final": _n(FINAL_RANK)})
        condition = ("attribute_exists(pk) AND #r < :final AND (#r < :rank OR (#r = :rank AND #p < :p))")
        params["ExpressionAttributeNames"].update({"#r": "rank", "#p": "progress"})
        try:
            attrs = self._client.update_item(
                TableName=self.tables["tasks"], Key=_task_address(user_id, task_id), ConditionExpression=condition,
                ReturnValues="ALL_NEW", **params,
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return _task(attrs)

    def set_task_file(self, user_id: str, task_id: int, file_id: str) -> None:
        expr = _Update({"f_file_id": json.dumps(file_id)})
        self._update("tasks", _task_address(user_id, task_id), expr, "attribute_exists(pk)",
                     NotFound(f"no task {task_id}"))

    def open_tasks(self, limit: int = 100) -> list[TaskRecord]:
        """The `open` partition lists every task created (one small item each, oldest first); an
        item whose task is final is deleted here rather than by the conditional write that made
        it final, which stays a single UpdateItem."""
        found = []
        for marker in self._query("tasks", "pk = :open", {":open": _s(_OPEN_TASKS)}, at_most=limit):
            task = self.get_task(marker["user_id"]["S"], int(marker["task_id"]["N"]))
            if task is None or task.final:
                self._client.delete_item(TableName=self.tables["tasks"], Key={"pk": marker["pk"], "sk": marker["sk"]})
            else:
                found.append(task)
        return found

    # responses (items of the usage table: it has the TTL, and the functions that call models may
    # already write it; they read only `resp#` items of it) ---------------------------------------
    def put_response(self, record: StoredResponse) -> None:
        """The parts first, the head last: a head never names a part that is not there yet."""
        table = self.tables["usage"]
        pk = _s(_RESPONSE_PREFIX + record.response_id)
        expires = _n(int(record.created_at + RESPONSE_TTL) + 1)
        head: dict[str, Any] = {"pk": pk, "sk": _s("head"), "user_id": _s(record.user_id), "model": _s(record.model),
                "created_at": _n(record.created_at), "expires_at": expires}
        if record.document is not None:
            packed = zlib.compress(record.document.encode(), 6)
            parts = [packed[i:i + _PART_BYTES] for i in range(0, len(packed), _PART_BYTES)] or [b""]
            for n, part in enumerate(parts[1:], 1):
                self._client.put_item(TableName=table, Item={
                    "pk": pk, "sk": _s(f"part#{n}"), "data": {"B": part}, "expires_at": expires})
            head.update(doc={"B": parts[0]}, parts=_n(len(parts)))
        self._client.put_item(TableName=table, Item=head)

    def get_response(self, response_id: str) -> StoredResponse | None:
        pk = _s(_RESPONSE_PREFIX + response_id)
        head = self._get("usage", {"pk": pk, "sk": _s("head")})
        if not head or "user_id" not in head:
            return None
        created_at = float(head["created_at"]["N"])
        if created_at + RESPONSE_TTL <= time.time():  # TTL deletion lags: expiry is decided here
            return None
        document = None
        if "doc" in head:
            packed = [head["doc"]["B"]]
            for n in range(1, int(head["parts"]["N"])):
                part = self._get("usage", {"pk": pk, "sk": _s(f"part#{n}")})
                if not part or "data" not in part:
                    return None  # deleted meanwhile
                packed.append(part["data"]["B"])
            document = zlib.decompress(b"".join(packed)).decode()
        return StoredResponse(response_id, head["user_id"]["S"], head["model"]["S"], created_at, document)

    def delete_response(self, response_id: str) -> bool:
        """Overwritten by tombstones (no function but management's may delete items): the document
        is gone at once, and the tombstones go with the TTL."""
        table = self.tables["usage"]
        pk = _s(_RESPONSE_PREFIX + response_id)
        head = self._get("usage", {"pk": pk, "sk": _s("head")})
        if not head or "user_id" not in head:
            return False
        expires = head["expires_at"]
        for n in range(1, int(head["parts"]["N"]) if "parts" in head else 1):
            self._client.put_item(TableName=table, Item={"pk": pk, "sk": _s(f"part#{n}"), "expires_at": expires})
        self._client.put_item(TableName=table, Item={"pk": pk, "sk": _s("head"), "expires_at": expires})
        return True

    # catalog overrides -----------------------------------------------------------------------
    def catalog_version(self) -> int:
        item = self._get("catalog", {"pk": _s("meta"), "sk": _s("version")})
        return int(item["version"]["N"]) if item else 0

    def get_catalog_overrides(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {"models": {}, "tiers": {}}
        for page in self._client.get_paginator("scan").paginate(
            TableName=self.tables["catalog"], ConsistentRead=True
        ):
            for item in page["Items"]:
                kind = item["pk"]["S"]
                if kind in out:
                    out[kind][item["sk"]["S"]] = {
                        k[2:]: json.loads(v["S"]) for k, v in item.items() if k.startswith("f_")
                    }
        return out

    def set_model_override(self, model: str, fields: dict[str, Any]) -> None:
        self._set_override("models", model, fields)

    def set_tier_override(self, tier: str, fields: dict[str, Any]) -> None:
        self._set_override("tiers", tier, fields)

    def delete_model_override(self, model: str) -> None:
        """Delete the override and bump the version in one transaction; NotFound if there is none."""
        table = self.tables["catalog"]
        reasons = self._transact([
            {"Delete": {"TableName": table, "Key": {"pk": _s("models"), "sk": _s(model)},
                        "ConditionExpression": "attribute_exists(pk)"}},
            self._version_bump(),
        ])
        if reasons is not None:
            raise NotFound(f"no override of model {model}")

    def list_channels(self) -> dict[str, dict[str, Any]]:
        # A Scan of the small catalog table, as its overrides are read: the model-calling functions
        # may Scan and GetItem it, nothing more.
        pages = self._client.get_paginator("scan").paginate(
            TableName=self.tables["catalog"], ConsistentRead=True, FilterExpression="pk = :k",
            ExpressionAttributeValues={":k": _s("channels")},
        )
        return {item["sk"]["S"]: {k[2:]: json.loads(v["S"]) for k, v in item.items() if k.startswith("f_")}
                for page in pages for item in page["Items"]}

    def put_channel(self, name: str, fields: dict[str, Any], *, exists: bool | None = None) -> None:
        self._set_override("channels", name, fields, exists)

    def delete_channel(self, name: str) -> None:
        reasons = self._transact([
            {"Delete": {"TableName": self.tables["catalog"], "Key": {"pk": _s("channels"), "sk": _s(name)},
                        "ConditionExpression": "attribute_exists(pk)"}},
            self._version_bump(),
        ])
        if reasons is not None:
            raise NotFound(f"no channel {name}")

    def _version_bump(self) -> dict[str, Any]:
        return {"Update": {"TableName": self.tables["catalog"], "Key": {"pk": _s("meta"), "sk": _s("version")},
                           "UpdateExpression": "ADD version :one", "ExpressionAttributeValues": {":one": _n(1)}}}

    def _set_override(self, kind: str, name: str, fields: dict[str, Any], exists: bool | None = None) -> None:
        """Merge `fields` into the override (one attribute per field) and bump the version, atomically;
        `exists` as `put_channel`'s."""
        expr = _Update()
        expr.set("updated_at", time.time())
        for field, value in fields.items():
            expr.set("f_" + field, json.dumps(value))
        table = self.tables["catalog"]
        update = {"TableName": table, "Key": {"pk": _s(kind), "sk": _s(name)}, **expr.params()}
        if exists is not None:
            update["ConditionExpression"] = "attribute_exists(pk)" if exists else "attribute_not_exists(pk)"
        reasons = self._transact([{"Update": update}, self._version_bump()])
        if reasons is not None:
            if exists is None:
                raise StoreError("catalog override was not written")
            raise NotFound(f"no {kind} {name}") if exists else AlreadyExists(f"{kind} {name} exists")

    # plumbing --------------------------------------------------------------------------------
    def _window_open_guess(self, counter: Counter, now: float) -> bool:
        start = self._windows.get(counter.counter_id)
        return start is not None and now < start + counter.window

    def _counter_item(self, counter: Counter, now: float, opens: bool) -> dict[str, Any]:
        base = {"TableName": self.tables["counters"], "Key": {"counter_id": _s(counter.counter_id)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        cutoff = _n(now - counter.window)
        if opens:
            return {"Update": {
                **base,
                "UpdateExpression": "SET window_start = :now, hits = :one, expires_at = :ttl",
                "ConditionExpression": "attribute_not_exists(counter_id) OR window_start <= :cutoff",
                "ExpressionAttributeValues": {
                    ":now": _n(now), ":one": _n(1), ":cutoff": cutoff,
                    ":ttl": _n(int(now + counter.window + _COUNTER_TTL_SLACK)),
                },
            }}
        return {"Update": {
            **base,
            "UpdateExpression": "ADD hits :one",
            "ConditionExpression": "window_start > :cutoff AND hits < :limit",
            "ExpressionAttributeValues": {":one": _n(1), ":cutoff": cutoff, ":limit": _n(counter.limit)},
        }}

    def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Run one transaction. None when it committed; the cancellation reasons when a condition
        failed. Conflicts and throttling are retried with bounded exponential backoff."""
        from botocore.exceptions import ClientError

        for attempt in range(_MAX_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=items)
                return None
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                reasons = exc.response.get("CancellationReasons") or []
                codes = {r.get("Code") for r in reasons}
                if code == "TransactionCanceledException" and "ConditionalCheckFailed" in codes:
                    return reasons
                if code in _RETRYABLE or (code == "TransactionCanceledException" and codes & _RETRYABLE):
                    _backoff(attempt)
                    continue
                raise
        raise StoreBusy("store busy: transaction kept conflicting or throttled")

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self._client.get_item(TableName=self.tables[table], Key=key, ConsistentRead=True).get("Item")

    def _key_at(self, pointer: dict[str, Any] | None) -> Key | None:
        if pointer is None:
            return None
        item = self._get("keys", _key_address(pointer["user_id"]["S"], pointer["key_id"]["S"]))
        return _decode(Key, item) if item else None

    def _update(self, table: str, key: dict[str, Any], expr: _Update, condition: str,
                missing: StoreError) -> dict[str, Any]:
        try:
            return self._client.update_item(
                TableName=self.tables[table], Key=key, ConditionExpression=condition, ReturnValues="ALL_NEW",
                **expr.params(),
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            raise missing from None

    def _query(self, table: str, key_condition: str, values: dict[str, Any], *, filter: str | None = None,
               newest_first: bool = False, start: dict[str, Any] | None = None,
               at_most: int | None = None, projection: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
        """Every matching item; or, given `at_most`, no more than that many, reading about as few:
        pages sized by `Limit` (items read, before the filter) that grow only while the filter
        leaves them short. `start` is the key the query continues after; `projection` names the
        only attributes to return."""
        params: dict[str, Any] = {
            "TableName": self.tables[table], "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": values, "ConsistentRead": True, "ScanIndexForward": not newest_first,
        }
        if filter:
            params["FilterExpression"] = filter
        if projection:
            params["ProjectionExpression"] = ", ".join(f"#p{n}" for n in range(len(projection)))
            params["ExpressionAttributeNames"] = {f"#p{n}": name for n, name in enumerate(projection)}
        if at_most is None:
            for page in self._client.get_paginator("query").paginate(**params):
                yield from page["Items"]
            return
        size = at_most
        while at_most > 0:
            if start is not None:
                params["ExclusiveStartKey"] = start
            page = self._client.query(**params, Limit=min(size, _MAX_PAGE))
            found = page["Items"][:at_most]
            yield from found
            at_most -= len(found)
            start = page.get("LastEvaluatedKey")
            if start is None:
                return
            size *= 2


# --- helpers ------------------------------------------------------------------------------------

class _Throttled:
    """The DynamoDB client, with throttling that outlasted botocore's own retries raised as
    StoreBusy (an answer the HTTP layer turns into 503 with Retry-After, never a 500)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        from botocore.exceptions import ClientError

        method = getattr(self._client, name)
        if not callable(method):
            return method
        if name == "transact_write_items":  # transactions retry, then raise StoreBusy, in `_transact`
            setattr(self, name, method)
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _THROTTLED:
                    raise StoreBusy(f"DynamoDB throttled {name}") from exc
                raise

        setattr(self, name, call)  # made once per method
        return call


def _new_client() -> Any:
    """A DynamoDB client from the AWS SDK's own settings (region, credentials, AWS_ENDPOINT_URL_DYNAMODB)."""
    from botocore.config import Config

    from ..awsclients import client

    return client(
        "dynamodb",
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10,
                      tcp_keepalive=True, max_pool_connections=32),
    )


def _backoff(attempt: int) -> None:
    time.sleep(min(0.5, 0.01 * 2 ** attempt) * random.uniform(0.5, 1.0))


def _failed(reason: dict[str, Any]) -> bool:
    return reason.get("Code") == "ConditionalCheckFailed"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    if isinstance(value, float):
        text = repr(value)
        return {"N": text if "e" not in text and "inf" not in text else format(value, "f")}
    return {"N": str(int(value))}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return _n(value)
    if isinstance(value, list):
        return {"L": [_s(str(v)) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): _value(v) for k, v in value.items() if v is not None}}
    return _s(str(value))


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    """A record's fields as DynamoDB attributes; None and {} are left out (absent means null, or empty)."""
    return {k: _value(v) for k, v in values.items() if v is not None and v != {}}


def _decode(cls: type, item: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dc_fields(cls):
        raw = item.get(f.name)
        if raw is None or "NULL" in raw:
            continue
        if "N" in raw:
            kwargs[f.name] = float(raw["N"]) if "float" in str(f.type) else int(raw["N"])
        elif "BOOL" in raw:
            kwargs[f.name] = raw["BOOL"]
        elif "L" in raw:
            kwargs[f.name] = [v["S"] for v in raw["L"]]
        elif "M" in raw:
            kwargs[f.name] = _plain(raw)
        else:
            kwargs[f.name] = raw["S"]
    return cls(**kwargs)


def _plain(raw: dict[str, Any]) -> Any:
    """A map attribute's value as Python: maps, integers (the only numbers maps hold), strings."""
    if "M" in raw:
        return {k: _plain(v) for k, v in raw["M"].items()}
    if "N" in raw:
        return int(raw["N"])
    if "BOOL" in raw:
        return raw["BOOL"]
    return raw.get("S")


def _put(table: str, item: dict[str, Any], condition: str | None = None) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": table, "Item": item}
    if condition:
        put["ConditionExpression"] = condition
    return {"Put": put}


def _key_address(user_id: str, key_id: str) -> dict[str, Any]:
    return {"pk": _s(f"user#{user_id}"), "sk": _s(f"key#{key_id}")}


def _hash_address(key_hash: str) -> dict[str, Any]:
    return {"pk": _s(f"hash#{key_hash}"), "sk": _s("hash")}


def _id_address(key_id: str) -> dict[str, Any]:
    return {"pk": _s(f"keyid#{key_id}"), "sk": _s("keyid")}


# A user's usage records between two sort keys (`_usage_range` sets them), and what a summary sums.
_USAGE_RANGE = "pk = :pk AND sk BETWEEN :lo AND :hi"
_SUMMED = ("created_at", "model", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost")


def _usage_range(user_id: str, since: float | None, until: float | None,
                 model: str | None) -> tuple[dict[str, Any], str | None]:
    """The values of `_USAGE_RANGE` for a user's usage in [since, until), and the filter that keeps
    exactly that range (the sort keys bound it to the microsecond) and one model, when given."""
    values: dict[str, Any] = {
        ":pk": _s(f"user#{user_id}"),
        ":lo": _s(_usage_sort_key(since, "") if since is not None else "0"),
        ":hi": _s(_usage_sort_key(until, "") + "$" if until is not None else "~"),
    }
    filters = []
    if since is not None:
        filters.append("created_at >= :since")
        values[":since"] = _n(since)
    if until is not None:
        filters.append("created_at < :until")
        values[":until"] = _n(until)
    if model:
        filters.append("model = :model")
        values[":model"] = _s(model)
    return values, " AND ".join(filters) or None


_OPEN_TASKS = "open"


def _open_task_address(task_id: int) -> dict[str, Any]:
    return {"pk": _s(_OPEN_TASKS), "sk": _s(f"task#{task_id:020d}")}


def _task_address(user_id: str, task_id: int) -> dict[str, Any]:
    return {"pk": _s(f"user#{user_id}"), "sk": _s(f"task#{task_id:020d}")}


def _task(item: dict[str, Any]) -> TaskRecord:
    return TaskRecord(**{k[2:]: json.loads(v["S"]) for k, v in item.items() if k.startswith("f_")})


def _usage_sort_key(created_at: float, request_id: str) -> str:
    """Sorts like (created_at, request_id): zero-padded fixed-point time, then the id."""
    return f"{created_at:020.6f}#{request_id}"


class _Update:
    """SET/REMOVE/ADD clauses with placeholder names, so any attribute name is safe."""

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        """`fields`: attributes to SET (None values are REMOVEd), as `set` takes them."""
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        for attr, value in (fields or {}).items():
            self.set(attr, value)

    def _name(self, attr: str) -> str:
        token = f"#a{len(self.names)}"
        self.names[token] = attr
        return token

    def set(self, attr: str, value: Any) -> None:
        name = self._name(attr)
        if value is None:
            self.removes.append(name)
        else:
            self.values[f":v{len(self.values)}"] = _value(value)
            self.sets.append(f"{name} = :v{len(self.values) - 1}")

    def add(self, attr: str, amount: int) -> None:
        name = self._name(attr)
        self.values[f":v{len(self.values)}"] = _n(amount)
        self.adds.append(f"{name} :v{len(self.values) - 1}")

    def params(self) -> dict[str, Any]:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        out: dict[str, Any] = {"UpdateExpression": " ".join(parts), "ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out
