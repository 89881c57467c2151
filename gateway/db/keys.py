"""API keys in Postgres. Only the SHA-256 of a key and a short display prefix are stored.

A rotated key keeps its predecessor's `lineage` (the first key of the chain): limits count per lineage."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.apikeys import hash_key, new_key
from gateway.limits import LimitSet

_COLUMNS = ("id, name, tenant, prefix, created_at, expires_at, revoked_at, rotated_from, allowed_tiers, "
            "budget_usd, rate_limit_rpm, rate_limit_tpm, budget_period, lineage")
# What PATCH /v1/keys/{id} may change (the limit fields of LimitSet).
LIMIT_FIELDS = ("rate_limit_rpm", "rate_limit_tpm", "budget_usd", "budget_period", "allowed_tiers")


class KeyRecord(msgspec.Struct, frozen=True):
    id: str
    name: str
    tenant: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    rotated_from: str | None = None
    allowed_tiers: list[str] | None = None
    budget_usd: float | None = None
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
    budget_period: str = "total"
    lineage: str | None = None

    @property
    def limits(self) -> LimitSet:
        return msgspec.convert({f: getattr(self, f) for f in LIMIT_FIELDS}, LimitSet)

    def usable(self, now: dt.datetime) -> str | None:
        """None when the key may be used now, else why not."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None


class NewKey(msgspec.Struct, frozen=True):
    record: KeyRecord
    key: str


def _record(row: dict[str, Any]) -> KeyRecord:
    row = dict(row)
    row["id"] = str(row["id"])
    for f in ("rotated_from", "lineage"):
        if row.get(f) is not None:
            row[f] = str(row[f])
    return msgspec.convert(row, KeyRecord)


class KeyStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(self, name: str, tenant: str, *, expires_at: dt.datetime | None = None,
                     limits: LimitSet | None = None, rotated_from: KeyRecord | None = None) -> NewKey:
        key = new_key()
        lim = limits or LimitSet()
        key_id = uuid.uuid4()
        lineage = (rotated_from.lineage or rotated_from.id) if rotated_from is not None else key_id
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"INSERT INTO api_keys (id, name, tenant, prefix, key_hash, expires_at, allowed_tiers, budget_usd,"
                f" rate_limit_rpm, rate_limit_tpm, budget_period, rotated_from, lineage)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (key_id, name, tenant, key[:12], hash_key(key), expires_at, lim.allowed_tiers, lim.budget_usd,
                 lim.rate_limit_rpm, lim.rate_limit_tpm, lim.budget_period,
                 rotated_from.id if rotated_from is not None else None, lineage))
            row = await cur.fetchone()
        assert row is not None
        return NewKey(_record(row), key)

    async def list(self, tenant: str | None = None) -> list[KeyRecord]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if tenant is None:
                await cur.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
            else:
                await cur.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE tenant = %s ORDER BY created_at, id",
                                  (tenant,))
            return [_record(r) for r in await cur.fetchall()]

    async def get(self, key_id: str) -> KeyRecord | None:
        try:
            uuid.UUID(key_id)
        except ValueError:
            return None
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
            row = await cur.fetchone()
        return _record(row) if row else None

    async def by_hash(self, digest: bytes) -> tuple[KeyRecord, bytes] | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE key_hash = %s", (digest,))
            row = await cur.fetchone()
        if row is None:
            return None
        stored = bytes(row.pop("key_hash"))
        return _record(row), stored

    async def revoke(self, key_id: str) -> KeyRecord | None:
        if await self.get(key_id) is None:
            return None
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s",
                               (key_id,))
        return await self.get(key_id)

    async def rotate(self, key_id: str, grace: dt.timedelta) -> NewKey | None:
        """A new key with the same name, tenant, limits and lineage; the old one expires after the grace period."""
        old = await self.get(key_id)
        if old is None or old.revoked_at is not None:
            return None
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + %s) WHERE id = %s",
                (grace, key_id))
        return await self.create(old.name, old.tenant, expires_at=old.expires_at, limits=old.limits,
                                 rotated_from=old)

    async def set_limits(self, key_id: str, changes: dict[str, object]) -> KeyRecord | None:
        """Change some of a key's limit fields (LIMIT_FIELDS; None clears a limit)."""
        if await self.get(key_id) is None:
            return None
        fields = [f for f in LIMIT_FIELDS if f in changes]
        if fields:
            assignments = ", ".join(f"{f} = %s" for f in fields)
            async with self.pool.connection() as conn:
                await conn.execute(f"UPDATE api_keys SET {assignments} WHERE id = %s",  # type: ignore[arg-type]
                                   (*(changes[f] for f in fields), key_id))
        return await self.get(key_id)
