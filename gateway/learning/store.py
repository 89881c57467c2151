"""Judgements in Postgres (the `judgements` table, migrations/0009_judgements.sql): written by the
learning worker, read by `smr eval --from-logs` and `smr calibrate --from-logs --target-quality`."""

from __future__ import annotations

import datetime as dt

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


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
