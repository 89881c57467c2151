"""Judgements in Postgres (the `judgements` table, migrations/0009_judgements.sql): written by the
learning worker, read by `smr eval --from-logs` and `smr calibrate --from-logs --target-quality`; and
checked semantic-cache answers (`cache_checks`, migrations/0011_cache_checks.sql), from which the cache
learns its acceptance threshold (gateway/cache/acceptance.py)."""

from __future__ import annotations

import datetime as dt

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.cache.acceptance import Check


class Judgement(msgspec.Struct, frozen=True):
    request_id: str
    tenant: str | None
    tier: str
    classifier: str | None
    score: float | None
    backend: str
    reference_tier: str
    reference_backend: str
    verdict: str  # "served", "reference" or "tie"
    judge: str
    cost_usd: float
    prompt: str | None = None
    ts: dt.datetime | None = None


_FIELDS = [f for f in Judgement.__struct_fields__ if f != "ts"]
_INSERT = (f"INSERT INTO judgements ({', '.join(_FIELDS)}) VALUES ({', '.join('%(' + f + ')s' for f in _FIELDS)}) "
           "ON CONFLICT (request_id) DO NOTHING")
_READ = """
    SELECT * FROM judgements
    WHERE (%(since)s::timestamptz IS NULL OR ts >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR ts < %(until)s::timestamptz)
      AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
    ORDER BY ts"""


class JudgementStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def add(self, j: Judgement) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_INSERT, msgspec.to_builtins(j))

    async def window(self, since: dt.datetime | None, until: dt.datetime | None,
                     tenant: str | None) -> list[Judgement]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_READ, {"since": since, "until": until, "tenant": tenant})  # type: ignore[arg-type]
            return [msgspec.convert(r, Judgement) for r in await cur.fetchall()]


class CacheCheck(msgspec.Struct, frozen=True):
    request_id: str
    tenant: str | None
    kind: str  # "hit" or "near_miss"
    similarity: float
    threshold: float  # the acceptance threshold in force when it was checked
    guard_score: float | None
    verdict: str  # "right", "wrong" or "unsure"
    judge: str
    cost_usd: float


_CHECK_FIELDS = list(CacheCheck.__struct_fields__)
_CHECK_INSERT = (f"INSERT INTO cache_checks ({', '.join(_CHECK_FIELDS)}) "
                 f"VALUES ({', '.join('%(' + f + ')s' for f in _CHECK_FIELDS)}) ON CONFLICT (request_id) DO NOTHING")
_CHECK_READ = "SELECT similarity, verdict, threshold FROM cache_checks ORDER BY ts DESC LIMIT %(limit)s"


class CacheCheckStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def add(self, c: CacheCheck) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_CHECK_INSERT, msgspec.to_builtins(c))

    async def recent(self, limit: int = 5000) -> list[Check]:
        """The latest `limit` checks, as the acceptance rule reads them."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_CHECK_READ, {"limit": limit})
            return [Check(float(s), str(v), float(t)) for s, v, t in await cur.fetchall()]
