"""Ratings of answers (POST /v1/feedback), and what `smr calibrate/train --from-logs` read: the logged
prompts of a time window (log.prompts) and the rated ones."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")


class Rated(msgspec.Struct, frozen=True):
    request_id: str
    rating: int
    created: dt.datetime
    comment: str | None = None
    object: str = "feedback"


class LoggedPrompt(msgspec.Struct, frozen=True):
    request_id: str
    prompt: str
    prompt_tokens: int
    completion_tokens: int


class RatedRequest(msgspec.Struct, frozen=True):
    """A rated request whose prompt was logged (log.prompts)."""

    request_id: str
    prompt: str
    tier: str | None
    rating: int


# The rating is stored with the request's own tenant; a key rates only requests of its tenant.
_RATE = """
    INSERT INTO feedback (request_id, tenant, key_id, rating, comment)
    SELECT request_id, tenant, %(key_id)s, %(rating)s, %(comment)s FROM request_log
    WHERE request_id = %(request_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
    ON CONFLICT (request_id) DO UPDATE
        SET rating = excluded.rating, comment = excluded.comment, key_id = excluded.key_id, created_at = now()
    RETURNING request_id, rating, created_at AS created, comment"""

_WINDOW = """
      AND (%(since)s::timestamptz IS NULL OR r.ts >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR r.ts < %(until)s::timestamptz)
      AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s::text)
    ORDER BY r.ts"""

_PROMPTS = """
    SELECT r.request_id, r.prompt, r.prompt_tokens, r.completion_tokens FROM request_log r
    WHERE r.prompt IS NOT NULL AND r.http_status = 200""" + _WINDOW

_RATED = """
    SELECT f.request_id, r.prompt, r.tier, f.rating FROM feedback f JOIN request_log r USING (request_id)
    WHERE r.prompt IS NOT NULL AND f.rating <> 0 AND r.http_status = 200""" + _WINDOW


class FeedbackStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def rate(self, request_id: str, tenant: str | None, key_id: str | None, rating: int,
                   comment: str | None) -> Rated | None:
        """Rate a logged request (`tenant` None: the admin, any tenant's); None when there is no such request."""
        params = {"request_id": request_id, "tenant": tenant, "key_id": key_id, "rating": rating, "comment": comment}
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_RATE, params)
            row = await cur.fetchone()
        return msgspec.convert(row, Rated) if row else None

    async def rated(self, since: dt.datetime | None, until: dt.datetime | None,
                    tenant: str | None) -> list[RatedRequest]:
        return await self._window(_RATED, RatedRequest, since, until, tenant)

    async def prompts(self, since: dt.datetime | None, until: dt.datetime | None,
                      tenant: str | None) -> list[LoggedPrompt]:
        return await self._window(_PROMPTS, LoggedPrompt, since, until, tenant)

    async def _window(self, sql: str, kind: type[T], since: dt.datetime | None, until: dt.datetime | None,
                      tenant: str | None) -> list[T]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, {"since": since, "until": until, "tenant": tenant})  # type: ignore[arg-type]
            return [msgspec.convert(r, kind) for r in await cur.fetchall()]
