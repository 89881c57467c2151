"""Tenant limits in Postgres, and a key's or tenant's spend read back from the request log."""

from __future__ import annotations

import datetime as dt

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.vocab.limits import LIMIT_FIELDS, LimitSet

_FIELDS = LIMIT_FIELDS  # one column each


class TenantLimitsStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def get(self, tenant: str) -> LimitSet | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {', '.join(_FIELDS)} FROM tenant_limits WHERE tenant = %s",  # type: ignore[arg-type]
                              (tenant,))
            row = await cur.fetchone()
        if row and row.get("allowed_tiers") == []:  # stored before [] was refused: every tier, as null
            row["allowed_tiers"] = None
        return msgspec.convert(row, LimitSet) if row else None

    async def put(self, tenant: str, limits: LimitSet) -> LimitSet:
        values = [getattr(limits, f) for f in _FIELDS]
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO tenant_limits (tenant, {', '.join(_FIELDS)}) VALUES (%s{', %s' * len(_FIELDS)}) "  # type: ignore[arg-type]
                f"ON CONFLICT (tenant) DO UPDATE SET {', '.join(f'{f} = EXCLUDED.{f}' for f in _FIELDS)}, "
                "updated_at = now()", (tenant, *values))
        return limits


class SpendLog:
    """What the request log says a key or a tenant has spent since a time (to rebuild lost counters). A
    key's owner is its lineage: the spend of every key of its chain of rotations."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def spent(self, scope: str, owner: str, since: dt.datetime | None) -> float:
        if scope == "key":
            where = "key_id IN (SELECT id FROM api_keys WHERE lineage = %s::uuid)"
        else:
            where = "tenant = %s"
        sql = f"SELECT coalesce(sum(cost_usd), 0) FROM request_log WHERE {where}"
        params: tuple[object, ...] = (owner,)
        if since is not None:
            sql += " AND ts >= %s"
            params += (since,)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            row = await cur.fetchone()
        return float(row[0]) if row else 0.0
