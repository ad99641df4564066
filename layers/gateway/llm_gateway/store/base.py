"""The Store protocol: the gateway's persistent state, shaped by its access patterns.

Every adapter (SQLite for one machine, DynamoDB on AWS) gives the same guarantees, proven by one
contract test suite (tests/contract):
- `admit` is one atomic step: the rate-limit hits and the funds reservation succeed together or not
  at all, so a refused request neither counts against a limit nor holds money;
- `settle` is exactly once per request id: the usage record and the balance change are written
  together, and a replay changes nothing;
- a user's balance goes below zero only when an actual cost exceeds its reservation.
Records are plain dataclasses; times are epoch seconds (float) and money is integer micros.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

TIERS = ("regular", "vip", "premium")


@dataclass
class User:
    user_id: str
    tier: str = "regular"
    balance: int = 0  # micros; reservations in flight are already taken out
    membership_expire_at: float | None = None
    created_at: float = 0.0
    key_count: int = 0

    def effective_tier(self, now: float) -> str:
        if self.membership_expire_at is None or self.membership_expire_at > now:
            return self.tier
        return "regular"


@dataclass
class Key:
    key_id: str
    key_hash: str
    user_id: str
    key_hint: str  # first 8 and last 4 characters, the only part of the key ever shown again
    remark: str = ""
    permissions: list[str] = field(default_factory=list)
    rpm: int | None = None
    is_admin: bool = False
    is_disabled: bool = False
    created_at: float = 0.0
    used_at: float | None = None
    expired_at: float | None = None
    used_times: int = 0
    used_fee: int = 0  # micros settled
    held: int = 0  # micros reserved by requests in flight
    max_fee: int | None = None

    def fee_remaining(self) -> int | None:
        if self.max_fee is None:
            return None
        return self.max_fee - self.used_fee - self.held


@dataclass(frozen=True)
class Counter:
    """One rate-limit counter: at most `limit` hits in a window opened by the first admitted hit."""

    counter_id: str
    limit: int
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class RateState:
    """Where an admitted request left its tightest rate-limit window (the one with the fewest hits
    left): what the `x-ratelimit-*-requests` headers say. `remaining` is None where the store cannot
    tell without another read (DynamoDB, adding to a window this request did not open)."""

    limit: int
    remaining: int | None
    reset_at: float  # when the window closes (epoch seconds)


def tightest(states: list[RateState]) -> RateState | None:
    known = [s for s in states if s.remaining is not None]
    if known:
        return min(known, key=lambda s: (s.remaining, s.reset_at))
    return min(states, key=lambda s: s.limit) if states else None


@dataclass(frozen=True)
class Admission:
    ok: bool
    refused: str | None = None  # "rate" | "funds_user" | "funds_key"
    retry_after: int = 0  # whole seconds until the refusing window closes
    counter_id: str | None = None
    rate: RateState | None = None  # admitted: its tightest window


@dataclass
class UsageRecord:
    request_id: str
    user_id: str
    key_id: str
    model: str
    created_at: float
    route: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost: int = 0
    reserved: int = 0
    latency_ms: int = 0
    status: str = "ok"
    # What the call used besides text tokens (billing.usage.Usage.units): audio tokens, images by
    # "SIZE/QUALITY", characters, calls, pool. Empty for a plain token call.
    units: dict[str, Any] = field(default_factory=dict)
    # The channel that answered and the upstream calls made (API.md 7): the operator's, never a client's.
    channel: str = ""
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class UsagePage:
    """One page of a user's usage, newest first. The totals cover every record the filters match
    (not just this page); they are None when the listing was asked `with_totals=False`."""

    total: int | None
    records: list[UsageRecord]
    cost: int | None
    input_tokens: int | None
    output_tokens: int | None
    requests: int | None
    next_cursor: str | None = None  # continues after the last record; None when no older record matches


# How a usage summary groups records: by UTC day ("YYYY-MM-DD") or by model name.
USAGE_GROUPS = ("day", "model")


@dataclass
class UsageGroup:
    """The sums over one group of usage records (or, as a summary's `total`, over all of them).
    `input_tokens` counts cache reads and writes too, as a usage listing's totals do."""

    key: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0


@dataclass
class UsageSummary:
    """A user's usage over a range in groups, each key once, in ascending order of key."""

    groups: list[UsageGroup]
    total: UsageGroup


def utc_day(created_at: float) -> str:
    """The UTC day of an epoch time, as a summary by day keys it."""
    return time.strftime("%Y-%m-%d", time.gmtime(created_at // 86_400 * 86_400))


def summary_of(groups: list[UsageGroup]) -> UsageSummary:
    """A summary of `groups` (in ascending order of key), with their total."""
    total = UsageGroup("", *(sum(getattr(g, f) for g in groups)
                             for f in ("requests", "input_tokens", "output_tokens", "cost")))
    return UsageSummary(groups, total)


def check_usage_group(group: str) -> None:
    if group not in USAGE_GROUPS:
        raise ValueError(f"unknown usage grouping {group!r}: use one of {', '.join(USAGE_GROUPS)}")


# The search answer cache (API.md 5.3): an answer is served while younger than the age a request
# allows, at most CACHE_MAX_AGE; the adapters drop entries older than that (TTL, or pruning), and
# refuse answers larger than CACHE_MAX_BYTES (a DynamoDB item holds at most 400 KB).
CACHE_MAX_AGE = 86_400.0
CACHE_MAX_BYTES = 350_000


@dataclass(frozen=True)
class CachedAnswer:
    answer: str  # the answer as its JSON text
    stored_at: float


# Midjourney tasks (API.md 5.2). A task's status only moves forward, along this order; SUCCESS and
# FAILURE are both final, and nothing moves a final task.
TASK_RANKS = {"NOT_START": 0, "SUBMITTED": 1, "IN_PROGRESS": 2, "SUCCESS": 3, "FAILURE": 3}
FINAL_RANK = 3


@dataclass
class TaskRecord:
    """One asynchronous task as the store keeps it: the caller's view (Task JSON) is made from it by
    llm_gateway.tasks. `ticket` is the reservation made at submission (billing's Ticket as a dict):
    charged on acceptance, refunded once by whichever process sees the task reach FAILURE."""

    task_id: int
    user_id: str
    key_id: str
    action: str  # IMAGINE, UPSCALE, VARIATION, REROLL, ZOOM, PAN, BLEND, DESCRIBE
    pool: str = "FAST"
    status: str = "SUBMITTED"
    progress: int = 0  # percent
    prompt: str = ""
    description: str = ""
    fail_reason: str = ""
    submit_time: float = 0.0
    start_time: float | None = None
    finish_time: float | None = None
    updated_at: float = 0.0
    webhook_url: str = ""
    image_dc_url: str = ""
    file_id: str = ""  # the stored copy of the image (files storage), once made
    actions: list[dict[str, str]] = field(default_factory=list)
    provider: str = ""
    upstream_id: str = ""
    parent_id: int | None = None
    ticket: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return TASK_RANKS.get(self.status, 0)

    @property
    def final(self) -> bool:
        return self.rank >= FINAL_RANK


# What `advance_task` may change besides status and progress.
TASK_FIELDS = ("prompt", "description", "fail_reason", "start_time", "finish_time", "updated_at",
               "image_dc_url", "actions")


# Responses (API.md 3.8): who created each response id, and for a translated model the response
# itself (its input and output items), kept RESPONSE_TTL. Adapters drop older ones (TTL, or pruning);
# DynamoDB keeps a large document compressed, in parts under its 400 KB item limit.
RESPONSE_TTL = 30 * 86_400.0


@dataclass(frozen=True)
class StoredResponse:
    response_id: str
    user_id: str  # the owner: every other user is told the id does not exist
    model: str  # the catalog model that answered (a forwarded id is fetched from its upstream)
    created_at: float
    document: str | None = None  # JSON text {response, input_items} of a translated model; None: upstream keeps it


# What `update_user` / `update_key` may change; everything else is owned by admit/settle.
USER_FIELDS = ("tier", "balance", "membership_expire_at", "key_count")
KEY_FIELDS = ("remark", "permissions", "rpm", "is_admin", "is_disabled", "used_at", "expired_at", "max_fee")


def check_fields(fields: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse an update of a field the adapter must not touch directly."""
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")


class StoreError(Exception):
    pass


class StoreBusy(StoreError):
    """The store stayed throttled, locked or conflicting through the adapter's bounded retries:
    nothing was written. Before an upstream call the client is told to come back (503 with
    `Retry-After`); after one, the settlement is parked for a later retry, never dropped."""

    retry_after = 1


def waiting_allowed(store: Any) -> bool:
    """False inside a store's `attempt` (a call that must not wait: no lock waits, no retry sleeps)."""
    allowed = getattr(store, "waiting_allowed", None)
    return True if allowed is None else bool(allowed())


class WouldWait(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by a store call made through an adapter's `attempt` when it would have to wait for a
    lock: nothing was done, and the caller runs the call again where waiting is allowed (a thread).
    A BaseException, so the error handling it passes through (a settlement's retries) lets it by."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class KeyCapReached(StoreError):
    pass


class Store(Protocol):
    """What the gateway asks of persistent state. Adapters: store.sqlite, store.dynamodb."""

    def init(self) -> None:
        """Create tables or schema where missing. Idempotent."""

    # users
    def create_user(self, user: User) -> User: ...
    def get_user(self, user_id: str) -> User | None: ...
    def update_user(self, user_id: str, **fields: Any) -> User: ...
    def add_balance(self, user_id: str, micros: int) -> User: ...
    def count_users(self) -> int: ...
    def list_users(self) -> list[User]:
        """Every user, in order of user_id (the operator's `users list`)."""
        ...

    # keys
    def create_key(self, key: Key, max_keys: int | None = None) -> Key: ...
    def get_key_by_hash(self, key_hash: str) -> Key | None: ...
    def get_key(self, key_id: str) -> Key | None: ...
    def list_keys(self, user_id: str) -> list[Key]: ...
    def update_key(self, key_id: str, **fields: Any) -> Key: ...
    def delete_key(self, key_id: str) -> None: ...

    # admission and billing
    def admit(
        self,
        user_id: str,
        key_id: str | None,
        counters: list[Counter],
        reserve: int,
        now: float,
    ) -> Admission: ...

    def settle(self, record: UsageRecord) -> bool:
        """Settle `record.reserved` to `record.cost` and store the record. False if already settled."""

    def park_settlement(self, record: UsageRecord) -> None:
        """Keep a settlement that could not be written, for a later `settle` (billing.retry)."""

    def parked_settlements(self, limit: int = 100) -> list[UsageRecord]:
        """Parked settlements, oldest first."""

    def unpark_settlement(self, request_id: str) -> None:
        """Forget a parked settlement once it is settled (or found settled already)."""

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
        """Newest first (`created_at`, then `request_id`). `cursor`, a page's `next_cursor`, starts
        right after that page (offset must then be 0) and is stable under newer inserts; a cursor
        that is garbled or was made for another user or other filters is a ValueError.
        `with_totals=False` skips the totals so a large range costs only the page's reads."""

    def summarise_usage(
        self,
        user_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        group: str = "day",
    ) -> UsageSummary:
        """The user's usage in [since, until) (and of `model` only, when given) summed per `group`
        (USAGE_GROUPS: UTC day or model), reading only the records in that range; an unknown group
        is a ValueError."""

    # search answer cache
    def get_cached(self, cache_key: str) -> CachedAnswer | None:
        """The answer stored under `cache_key` (a hash of the query), None when absent or older than
        CACHE_MAX_AGE. The caller decides whether it is young enough for its request."""

    def put_cached(self, cache_key: str, answer: str, stored_at: float) -> bool:
        """Store (or replace) the answer under `cache_key`; False, storing nothing, when the answer is
        over CACHE_MAX_BYTES (UTF-8)."""

    # asynchronous tasks (Midjourney)
    def next_task_id(self) -> int:
        """A new task id: an integer never handed out before, by any process on this store."""

    def create_task(self, task: TaskRecord) -> None:
        """Store a new task (AlreadyExists if its id or its upstream id is taken)."""

    def get_task(self, user_id: str, task_id: int) -> TaskRecord | None:
        """The task if it is `user_id`'s (None for another user's, as for a missing one): one read."""

    def find_task(self, provider: str, upstream_id: str) -> TaskRecord | None:
        """The task the upstream knows as `upstream_id` (callbacks name tasks that way)."""

    def list_tasks(self, user_id: str, *, offset: int = 0, limit: int = 10) -> tuple[int, list[TaskRecord]]:
        """How many tasks the user has, and a page of them, newest (highest id) first."""

    def advance_task(self, user_id: str, task_id: int, status: str, progress: int,
                     changes: dict[str, Any]) -> TaskRecord | None:
        """Move the task to (`status`, `progress`) with `changes` (TASK_FIELDS) in one conditional
        write, only if that is a step forward: a higher status rank, or the same non-final rank with
        more progress. The task as written, or None when it was not (late, repeated, or final)."""

    def set_task_file(self, user_id: str, task_id: int, file_id: str) -> None:
        """Record the stored copy of the task's image."""

    def open_tasks(self, limit: int = 100) -> list[TaskRecord]:
        """At most `limit` tasks not final yet, oldest (lowest id) first, for the sweep of tasks
        whose upstream went silent (tasks.service.sweep). It may read more than it returns: a store
        that keeps a list of open tasks forgets, on the way, those it finds final."""

    # responses
    def put_response(self, record: StoredResponse) -> None:
        """Store (or replace) the response under its id."""

    def get_response(self, response_id: str) -> StoredResponse | None:
        """The response stored under the id; None when absent, deleted, or older than RESPONSE_TTL."""

    def delete_response(self, response_id: str) -> bool:
        """Forget the response (its document too); False when there was none to forget."""

    # catalog overrides
    def catalog_version(self) -> int: ...
    def get_catalog_overrides(self) -> dict[str, dict[str, dict[str, Any]]]: ...
    def set_model_override(self, model: str, fields: dict[str, Any]) -> None: ...
    def delete_model_override(self, model: str) -> None:
        """Remove the model's override (all its fields) and bump the version, atomically; NotFound
        (nothing written) when the model has none."""
    def set_tier_override(self, tier: str, fields: dict[str, Any]) -> None: ...

    # upstream channels (API.md 7): kept beside the catalog overrides, their changes bump its version
    def list_channels(self) -> dict[str, dict[str, Any]]:
        """Every channel by name, its fields as written (never a credential: only its name)."""
    def put_channel(self, name: str, fields: dict[str, Any], *, exists: bool | None = None) -> None:
        """Merge `fields` into the channel and bump the catalog version, atomically. `exists`:
        False refuses (AlreadyExists) a channel that is there, True refuses (NotFound) one that is not."""
    def delete_channel(self, name: str) -> None:
        """Remove the channel and bump the version, atomically; NotFound when there is none."""
