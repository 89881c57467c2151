"""API keys in Postgres. Only the SHA-256 of a key and a short display prefix are stored.

A rotated key keeps its predecessor's `lineage` (the first key of the chain): limits count per lineage."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from typing import Any

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.vocab.apikeys import hash_key, new_key
from gateway.vocab.limits import LIMIT_FIELDS, LimitSet, period_start

# A key's own columns, then one column per limit field (LimitSet's, in its order).
_COLUMNS = ", ".join(("id", "name", "tenant", "prefix", "created_at", "expires_at", "revoked_at", "rotated_from",
                      "lineage", *LIMIT_FIELDS))


class KeyRecord(LimitSet, frozen=True, kw_only=True, omit_defaults=False, forbid_unknown_fields=False):
    """A key as the admin API shows it: its own fields and its limits (LimitSet's fields, flat)."""

    id: str
    name: str
    tenant: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    rotated_from: str | None = None
    lineage: str | None = None

    @property
    def limits(self) -> LimitSet:
        return LimitSet(**{f: getattr(self, f) for f in LIMIT_FIELDS})

    def usable(self, now: dt.datetime) -> str | None:
        """None when the key may be used now, else why not."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None


class KeyListing(KeyRecord, frozen=True):
    """A key as GET /v1/keys lists it: its record, and what its lineage spent in the current budget period
    (`budget_period`, UTC; the request log's costs: a request in flight counts once it is logged)."""

    spend_usd: float = 0.0


class NewKey(msgspec.Struct, frozen=True):
    record: KeyRecord
    key: str


def _record(row: dict[str, Any]) -> KeyRecord:
    row = dict(row)
    row["id"] = str(row["id"])
    if row.get("allowed_tiers") == []:  # stored before [] was refused: every tier, as null
        row["allowed_tiers"] = None
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
            values = (key_id, name, tenant, key[:12], hash_key(key), expires_at,
                      rotated_from.id if rotated_from is not None else None, lineage,
                      *(getattr(lim, f) for f in LIMIT_FIELDS))
            await cur.execute(
                f"INSERT INTO api_keys (id, name, tenant, prefix, key_hash, expires_at, rotated_from, lineage,"
                f" {', '.join(LIMIT_FIELDS)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING {_COLUMNS}",
                values)  # type: ignore[arg-type]
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

    async def spend(self, now: dt.datetime) -> dict[str, dict[str, float]]:
        """Each lineage's spend from the request log: {lineage: {"day": .., "month": .., "total": ..}}."""
        day, month = period_start("day", now), period_start("month", now)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT k.lineage::text, coalesce(sum(r.cost_usd) FILTER (WHERE r.ts >= %s), 0),"
                " coalesce(sum(r.cost_usd) FILTER (WHERE r.ts >= %s), 0), coalesce(sum(r.cost_usd), 0)"
                " FROM request_log r JOIN api_keys k ON r.key_id = k.id GROUP BY k.lineage", (day, month))
            rows = await cur.fetchall()
        return {str(r[0]): {"day": float(r[1]), "month": float(r[2]), "total": float(r[3])} for r in rows}

    async def listing(self, tenant: str | None, now: dt.datetime) -> builtins.list[KeyListing]:
        """Every key (of `tenant`, or all) with its lineage's spend in its budget period."""
        records, spent = await self.list(tenant), await self.spend(now)
        out = []
        for k in records:
            usd = spent.get(k.lineage or k.id, {}).get(k.budget_period, 0.0)
            out.append(KeyListing(**msgspec.structs.asdict(k), spend_usd=round(usd, 10) + 0.0))
        return out

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
