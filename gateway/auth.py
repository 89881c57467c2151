"""Authenticating a request: the admin key, or an API key looked up by its hash (with a short cache).

Key strings and their hashing live in `gateway.apikeys`; the key table in `gateway.db.keys`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from typing import Protocol

import msgspec

from gateway.aio import within
from gateway.apikeys import hash_key, presented_key
from gateway.db.keys import KeyRecord
from gateway.errors import AuthenticationFailed, AuthUnavailable, PermissionDenied
from gateway.limits import NO_LIMITS, LimitSet


class Principal(msgspec.Struct, frozen=True):
    tenant: str
    key_id: str | None = None
    admin: bool = False
    limits: LimitSet = NO_LIMITS  # the key's own; the tenant's are looked up on admission

    @property
    def allowed_tiers(self) -> list[str] | None:
        return list(self.limits.allowed_tiers) if self.limits.allowed_tiers else None


ANONYMOUS = Principal(tenant="default")
ADMIN = Principal(tenant="*", admin=True)


class KeyLookup(Protocol):
    async def by_hash(self, digest: bytes) -> tuple[KeyRecord, bytes] | None: ...


class Authenticator:
    """Checks API keys against the key store, trusting a lookup for `cache_ttl_s`.

    When the store cannot answer within `lookup_timeout_s`, keys seen before keep working from memory
    and, for `retry_s`, no lookup is tried at all: a database outage costs one short wait, not one per
    request. A key never seen gets a quick 503 meanwhile."""

    def __init__(self, enabled: bool, admin_key: str | None, store: KeyLookup | None, cache_ttl_s: float = 10.0,
                 lookup_timeout_s: float = 0.5, retry_s: float = 2.0) -> None:
        self.enabled = enabled
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.lookup_timeout_s = lookup_timeout_s
        self.retry_s = retry_s
        self._cache: dict[bytes, tuple[float, KeyRecord]] = {}
        self._store_down_until = 0.0

    @property
    def store_up(self) -> bool:
        return time.monotonic() >= self._store_down_until

    def forget(self, key_id: str) -> None:
        """Drop a changed key from this process's lookup cache (others see the change within the TTL)."""
        for digest, (_, record) in list(self._cache.items()):
            if record.id == key_id:
                del self._cache[digest]

    def is_admin(self, key: str | None) -> bool:
        return bool(key) and self._admin_hash is not None and hmac.compare_digest(hash_key(key or ""), self._admin_hash)

    async def _fetch(self, digest: bytes) -> tuple[KeyRecord, bytes] | None:
        """The store's answer within the time limit. The lookup runs as its own task, so a database that
        does not answer (frozen) does not hold the request while the driver tries to cancel the query."""
        assert self.store is not None
        return await within(self.store.by_hash(digest), self.lookup_timeout_s)

    async def _lookup(self, digest: bytes) -> KeyRecord | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_ttl_s:
            return hit[1]
        if self.store is None:
            return None
        try:
            if now < self._store_down_until:
                raise ConnectionError("key store unreachable (recently)")
            found = await self._fetch(digest)
        except Exception as exc:  # database unreachable or too slow: a key seen before keeps working
            if now >= self._store_down_until:
                self._store_down_until = now + self.retry_s
            if hit is not None:
                return hit[1]
            raise AuthUnavailable(f"cannot check the API key: key store unavailable ({type(exc).__name__})") \
                from None
        self._store_down_until = 0.0
        if found is None or not hmac.compare_digest(found[1], digest):
            self._cache.pop(digest, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, found[0])
        return found[0]

    async def authenticate(self, authorization: str | None, x_api_key: str | None) -> Principal:
        key = presented_key(authorization, x_api_key)
        if self.is_admin(key):
            return ADMIN
        if not self.enabled:
            return ANONYMOUS
        if key is None:
            raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        record = await self._lookup(hash_key(key))
        if record is None:
            raise AuthenticationFailed("Incorrect API key provided")
        why = record.usable(dt.datetime.now(dt.UTC))
        if why is not None:
            raise AuthenticationFailed(f"API key {record.prefix}... is {why}", code=f"key_{why}")
        return Principal(tenant=record.tenant, key_id=record.id, limits=record.limits)

    def require_admin(self, authorization: str | None, x_api_key: str | None) -> None:
        if self._admin_hash is None:
            raise PermissionDenied("Admin endpoints are disabled: no admin key is configured (SMR_ADMIN_KEY)")
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise AuthenticationFailed("Missing admin key")
        if not self.is_admin(key):
            raise PermissionDenied("This endpoint needs the admin key")
