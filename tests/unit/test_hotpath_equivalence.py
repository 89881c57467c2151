"""The request path's cheaper pieces do what the ones they replaced did (issue 27): the JSON answer's bytes
and headers as Litestar's Response sent them, `within`'s waits and failures as `wait_for(shield(...))`
gave them, the budget period ids as strftime wrote them, and the log's batch insert built from the
table's column types."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from litestar import Litestar, Request, Response, post
from litestar.testing import TestClient
from litestar.types import ASGIApp

from gateway.api.answers import JSON, JSONAnswer
from gateway.db.log_row import COLUMNS, insert_statement
from gateway.infra import aio
from gateway.infra.aio import within
from gateway.vocab.limits import period_id

HEADERS = {"x-smr-tier": "simple", "x-smr-model": "local", "x-smr-cost-usd": "0.00000013",
           "X-RateLimit-Limit-Requests": "100", "x-smr-cache": "miss"}
BODY = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'


@post("/litestar", status_code=200)
async def as_litestar(request: Request) -> Response:
    return Response(BODY, media_type=JSON, headers=HEADERS)


@post("/ours", status_code=200)
async def as_ours(request: Request) -> ASGIApp:
    return JSONAnswer(BODY, dict(HEADERS))


def test_a_json_answer_sends_what_litestars_response_sent() -> None:
    with TestClient(Litestar([as_litestar, as_ours])) as client:
        theirs, ours = client.post("/litestar"), client.post("/ours")
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content == BODY
    assert ours.headers.raw == theirs.headers.raw  # the same names, values and order


async def _value(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return x


async def test_within_returns_the_answer_or_its_error() -> None:
    assert await within(_value(7, 0.001), 1.0) == 7

    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await within(boom(), 1.0)


async def test_within_does_not_wait_for_a_call_that_ignores_its_cancellation() -> None:
    finished = asyncio.Event()

    async def stubborn() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # as psycopg waits on a frozen server to cancel
            finished.set()
        return 1

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await within(stubborn(), 0.05)
    assert time.perf_counter() - started < 0.25
    assert len(aio._abandoned) == 1  # held until it ends, then let go
    await asyncio.wait_for(finished.wait(), 2)
    await asyncio.sleep(0)
    assert not aio._abandoned


async def test_a_cancelled_caller_of_within_abandons_the_call() -> None:
    outer = asyncio.ensure_future(within(_value(1, 10), 5.0))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert len(aio._abandoned) == 1
    await asyncio.sleep(0.01)
    assert not aio._abandoned


@pytest.mark.parametrize("when", [dt.datetime(2026, 1, 5, tzinfo=dt.UTC), dt.datetime(2026, 12, 31, 23, 59),
                                  dt.datetime(999, 2, 3), dt.datetime(9999, 12, 31)])
def test_budget_period_ids_are_what_strftime_wrote(when: dt.datetime) -> None:
    assert period_id("day", when) == when.strftime("d%Y-%m-%d")
    assert period_id("month", when) == when.strftime("m%Y-%m")
    assert period_id("total", when) == "total"


def test_the_log_insert_reads_each_column_as_its_type_and_json_as_text() -> None:
    types = dict.fromkeys(COLUMNS, "text") | {"ts": "timestamp with time zone", "key_id": "uuid",
                                              "explanation": "jsonb", "score": "real"}
    sql = insert_statement(types)
    assert "explanation::jsonb" in sql and "explanation text" in sql  # JSON holds it as a string
    assert "key_id uuid" in sql and "key_id::" not in sql
    assert "score real" in sql and "ts timestamp with time zone" in sql
    assert sql.endswith("ON CONFLICT (request_id) DO NOTHING")
