"""Authenticating a request: the admin key, or an API key looked up by its hash (with a short cache).

Key strings and their hashing live in `gateway.vocab.apikeys`; the key table in `gateway.db.keys`.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Protocol

import msgspec

from gateway.db.keys import KeyRecord
from gateway.infra.lookups import CachedLookup, SourceDown
from gateway.vocab.apikeys import hash_key, presented_key
from gateway.vocab.errors import AuthenticationFailed, AuthUnavailable, PermissionDenied
from gateway.vocab.limits import NO_LIMITS, LimitSet


class Principal(msgspec.Struct, frozen=True):
    tenant: str
    key_id: str | None = None
    admin: bool = False
    key_prefix: str | None = None  # the first characters of the key, for logs (never the key)
    limits: LimitSet = NO_LIMITS  # the key's own; the tenant's are looked up on admission
    lineage: str | None = None  # the first key of its rotations: its rate windows and spend are the lineage's

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
    request. A key never seen gets a quick 503 meanwhile.

    A change to a key (limits, revocation, rotation) made through any gateway process reaches this one
    through `on_change` (`gateway.infra.changes`, Redis pub/sub) and drops the key from memory at once; only
    while that feed is down does a change wait for `cache_ttl_s`. Expiry (a rotation's grace) is checked
    on every request against the record, so it ends on time once the record is re-read."""

    def __init__(self, enabled: bool, admin_key: str | None, store: KeyLookup | None, cache_ttl_s: float = 10.0,
                 lookup_timeout_s: float = 0.5, retry_s: float = 2.0) -> None:
        self.enabled = enabled
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self.store = store
        self._records: CachedLookup[bytes, tuple[KeyRecord, bytes] | None] = CachedLookup(
            cache_ttl_s, lookup_timeout_s, retry_s, keep=lambda found: found is not None)
        self._changes = 0  # changes heard so far: a lookup under way when one arrives is not kept

    @property
    def store_up(self) -> bool:
        return self._records.source_up

    def forget(self, key_id: str) -> None:
        """Drop a changed key from this process's lookup cache."""
        self._changes += 1
        self._records.forget_where(lambda found: found is not None and found[0].id == key_id)

    def on_change(self, kind: str, ident: str) -> None:
        """A change announced by any gateway process: a key's id, or "*" (anything: forget every key)."""
        if kind == "key":
            self.forget(ident)
        elif kind == "*":
            self._changes += 1
            self._records.forget_where(lambda _: True)

    def is_admin(self, key: str | None) -> bool:
        return bool(key) and self._is_admin_digest(hash_key(key or ""))

    def _is_admin_digest(self, digest: bytes) -> bool:
        return self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash)

    async def _lookup(self, digest: bytes) -> KeyRecord | None:
        store = self.store
        if store is None:
            return None
        seen = self._changes
        try:
            found = await self._records.get(digest, lambda: store.by_hash(digest))
        except SourceDown as exc:
            raise AuthUnavailable(f"cannot check the API key: key store unavailable ({exc})") from None
        if self._changes != seen:  # read before a change that arrived meanwhile: use it once, keep it not
            self._records.forget(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            return None
        return found[0]

    async def authenticate(self, authorization: str | None, x_api_key: str | None) -> Principal:
        key = presented_key(authorization, x_api_key)
        digest = hash_key(key) if key is not None else None  # once: for the admin key's check and the lookup
        if key and digest is not None and self._is_admin_digest(digest):
            return ADMIN
        if not self.enabled:
            return ANONYMOUS
        if key is None or digest is None:
            raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        record = await self._lookup(digest)
        if record is None:
            raise AuthenticationFailed("Incorrect API key provided")
        why = record.usable(dt.datetime.now(dt.UTC))
        if why is not None:
            raise AuthenticationFailed(f"API key {record.prefix}... is {why}", code=f"key_{why}")
        return Principal(tenant=record.tenant, key_id=record.id, limits=record.limits, key_prefix=record.prefix,
                         lineage=record.lineage or record.id)

    def require_admin(self, authorization: str | None, x_api_key: str | None) -> None:
        if self._admin_hash is None:
            raise PermissionDenied("Admin endpoints are disabled: no admin key is configured (SMR_ADMIN_KEY)")
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise AuthenticationFailed("Missing admin key")
        if not self.is_admin(key):
            raise PermissionDenied("This endpoint needs the admin key")
