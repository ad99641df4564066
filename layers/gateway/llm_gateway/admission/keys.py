"""API keys: minting, hashing, masking, and resolving a presented key to its key and user.

Only a SHA-256 of a key is stored. Resolved keys and users are cached per process for at most the
settings' cache TTL (≤ 5 s, the contract's bound for a change to take effect). Unknown keys are
cached too, negatively, for the same TTL, so a flood of requests with one junk key costs one store
read per TTL rather than one each; that cache holds at most `UNKNOWN_KEYS_CACHED` hashes (the oldest
go first), so random keys cannot grow it without bound. A key minted or changed in this process is
dropped from both caches at once (`forget`), so it works here the moment it exists, and everywhere
within the TTL, as API.md section 2 promises.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import threading
import time
from dataclasses import dataclass

from ..errors import GatewayError
from ..store.base import Key, Store, User

KEY_PREFIX = "sk-"
KEY_LENGTH = 48
_ALPHABET = string.ascii_letters + string.digits + "-_"
# the most unknown key hashes a process remembers (64-character hex each: about 2 MB at most)
UNKNOWN_KEYS_CACHED = 10_000


def new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH - len(KEY_PREFIX)))


def new_key_id() -> str:
    return "key_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mask(key: str) -> str:
    return f"{key[:8]}...{key[-4:]}"


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """`Authorization: Bearer sk-…`, a bare `Authorization: sk-…`, or `x-api-key: sk-…`."""
    if authorization:
        value = authorization.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if value:
            return value
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


@dataclass(frozen=True)
class Caller:
    key: Key
    user: User
    tier: str  # the effective tier at resolution time

    @property
    def user_id(self) -> str:
        return self.user.user_id


class KeyResolver:
    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Key, User]] = {}
        # hash -> when the store last said it is no key; oldest first (dicts keep insertion order)
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str | None) -> Caller | None:
        """The caller from this process's cache alone (None: `resolve` must read the store)."""
        if not presented:
            return None
        digest = hash_key(presented)
        hit = self._cache.get(digest)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            self._refuse_if_unknown(digest)
            return None
        return self._caller(hit[1], hit[2])

    def resolve(self, presented: str | None) -> Caller:
        """The caller, read from the store when the cache has no fresh entry (a blocking call)."""
        if not presented:
            raise GatewayError("invalid_api_key", MISSING_KEY)
        digest = hash_key(presented)
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            key, user = hit[1], hit[2]
        else:
            self._refuse_if_unknown(digest)
            found = self._store.get_key_by_hash(digest)
            owner = self._store.get_user(found.user_id) if found is not None else None
            if found is None or owner is None:
                with self._lock:
                    self._cache.pop(digest, None)
                    if self._ttl > 0:
                        self._unknown.pop(digest, None)  # re-inserted as the newest
                        while len(self._unknown) >= UNKNOWN_KEYS_CACHED:
                            del self._unknown[next(iter(self._unknown))]
                        self._unknown[digest] = time.monotonic()
                raise _invalid()
            key, user = found, owner
            with self._lock:
                if len(self._cache) > 50_000:
                    self._cache.clear()
                self._cache[digest] = (time.monotonic(), key, user)
        return self._caller(key, user)

    def _refuse_if_unknown(self, digest: str) -> None:
        """401 from memory when the store said, within the TTL, that `digest` is no key."""
        seen = self._unknown.get(digest)
        if seen is not None and time.monotonic() - seen < self._ttl:
            raise _invalid()

    @staticmethod
    def _caller(key: Key, user: User) -> Caller:
        now = time.time()
        if key.is_disabled:
            raise GatewayError("invalid_api_key", "This API key is disabled.")
        if key.expired_at is not None and key.expired_at <= now:
            raise GatewayError("invalid_api_key", "This API key has expired.")
        return Caller(key=key, user=user, tier=user.effective_tier(now))

    def forget(self, key_hash: str | None = None) -> None:
        """Drop cached entries (after this process itself changed a key or user)."""
        with self._lock:
            if key_hash is None:
                self._cache.clear()
                self._unknown.clear()
            else:
                self._cache.pop(key_hash, None)
                self._unknown.pop(key_hash, None)


# Both headers work on every route (Anthropic's SDK sends x-api-key, OpenAI's Authorization).
MISSING_KEY = "Missing API key: send it as 'Authorization: Bearer sk-...' or in the 'x-api-key' header."
INVALID_KEY = "Invalid API key: the key sent in 'Authorization' or 'x-api-key' is not one this gateway issued."


def _invalid() -> GatewayError:
    return GatewayError("invalid_api_key", INVALID_KEY)


def permits(permissions: list[str], model: str) -> bool:
    """Empty list: every model. `gpt-4*` matches by prefix; anything else matches exactly."""
    if not permissions:
        return True
    for rule in permissions:
        if rule == model or rule == "*" or (rule.endswith("*") and model.startswith(rule[:-1])):
            return True
    return False
