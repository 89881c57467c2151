"""The limit counters' steps side by side, in Redis (the Lua scripts of `gateway.infra.limit_scripts`) and in this
process's memory: the same answers, one round trip per step in Redis, and the budget's `reserved` exactly what
its live holds add up to whatever order holds are taken, lapse and settle in (issue 27: fewer round trips)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.cache.embedded import EmbeddedRedis
from gateway.infra.limiter import Counters, MemoryCounters, RedisCounters
from gateway.vocab.limits import BudgetCheck, Hold, RateCheck


class Sent:
    """The commands a client sends, one round trip each (these steps never pipeline)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.names: list[str] = []
        send: Callable[..., Any] = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            self.names.append(str(args[0]).upper())
            return await send(*args, **options)

        client.execute_command = counted  # type: ignore[method-assign]


@pytest.fixture(params=["redis", "memory"])
async def counters(request: pytest.FixtureRequest, redis_stack: EmbeddedRedis) -> AsyncIterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    client = aioredis.Redis.from_url(redis_stack.url)
    try:
        yield RedisCounters(client)
    finally:
        await client.aclose()


def budget(usd: float = 1.0) -> BudgetCheck:
    return BudgetCheck("key", "scripts-" + secrets.token_hex(4), usd, "total", "total")


def rpm(owner: str, limit: int) -> RateCheck:
    return RateCheck("key", owner, "requests", limit, 1)


def tpm(owner: str, limit: int, cost: int) -> RateCheck:
    return RateCheck("key", owner, "tokens", limit, cost)


async def test_rate_windows_are_taken_together_or_not_at_all(counters: Counters) -> None:
    owner = "scripts-" + secrets.token_hex(4)
    both = [rpm(owner, 3), tpm(owner, 100, 40)]
    first, second = await counters.take(both), await counters.take(both)
    assert first.refused is None and second.refused is None
    assert [s.used for s in second.states] == [2, 80]
    third = await counters.take(both)  # 3 requests fit, 120 tokens do not: neither is taken
    assert third.refused == both[1] and third.retry_ms > 0
    assert [s.used for s in (await counters.take([rpm(owner, 3), tpm(owner, 100, 0)])).states] == [3, 80]
    assert (await counters.take([rpm(owner, 3)])).refused is not None  # the one above took the third request


async def test_admission_reads_its_budgets_in_the_same_call(counters: Counters) -> None:
    b, unknown = budget(), budget()
    await counters.init_spend(b, 0.25, 0)
    assert (await counters.reserve([b], Hold("h1", 0.5, 60), [0])).refused is None
    taken = await counters.take([rpm("scripts-" + secrets.token_hex(4), 10)], [b, unknown])
    assert taken.refused is None and taken.used_usd[0] == pytest.approx(0.75) and taken.used_usd[1] is None
    assert await counters.used(b) == pytest.approx(0.75) and await counters.used(unknown) is None


async def test_holds_settle_once_lapse_on_time_and_reserved_stays_their_sum(counters: Counters) -> None:
    b = budget(1.0)
    assert (await counters.reserve([b], Hold("x", 0.1, 60), [0])).missing == b  # spend not known: rebuild first
    await counters.init_spend(b, 0.0, 0)
    short, long = Hold("short", 0.3, 0.2), Hold("long", 0.3, 60)
    for hold in (short, long):
        assert (await counters.reserve([b], hold, [0])).refused is None
    full = await counters.reserve([b], Hold("over", 0.5, 60), [0])
    assert full.refused == b and full.reserved_usd == pytest.approx(0.6)
    await asyncio.sleep(0.3)  # `short` lapses, never settled
    assert await counters.used(b) == pytest.approx(0.3)
    assert await counters.settle([b], long, 0.125)
    if isinstance(counters, RedisCounters):  # a settlement tried again (a replay) counts once
        await counters.settle([b], long, 0.125)
    assert await counters.used(b) == pytest.approx(0.125)
    assert await counters.settle([b], short, 0.0625)  # a lapsed hold's spend still counts
    assert await counters.used(b) == pytest.approx(0.1875)
    assert (await counters.reserve([b], Hold("fits", 0.8, 60), [0])).refused is None


async def test_completion_tokens_are_settled_in_the_same_call_as_the_budget(counters: Counters) -> None:
    owner, b = "scripts-" + secrets.token_hex(4), budget()
    await counters.init_spend(b, 0.0, 0)
    check = tpm(owner, 1000, 10)
    await counters.take([check])
    hold = Hold("t1", 0.1, 60)
    await counters.reserve([b], hold, [0])
    await counters.settle([b], hold, 0.05, [check, rpm(owner, 5)], 7)
    await counters.settle([], None, 0.0, [check], 3)  # tokens alone (a key without a budget)
    assert (await counters.take([tpm(owner, 1000, 0)])).states[0].used == 20
    assert await counters.used(b) == pytest.approx(0.05)


async def test_one_round_trip_per_step_and_scripts_sent_again_to_a_server_that_lost_them(
        redis_stack: EmbeddedRedis) -> None:
    client = aioredis.Redis.from_url(redis_stack.url)
    try:
        c = RedisCounters(client)
        owner, b = "scripts-" + secrets.token_hex(4), budget()
        await c.init_spend(b, 0.0, 0)
        sent = Sent(client)
        checks = [rpm(owner, 10), tpm(owner, 1000, 5), RateCheck("key", owner, "requests", 100, 1, 86_400_000)]
        hold = Hold("rt", 0.1, 60)
        await c.take(checks, [b])
        await c.reserve([b], hold, [0])
        await c.settle([b], hold, 0.05, checks, 4)
        assert sent.names == ["EVALSHA"] * 3
        await client.script_flush()
        del sent.names[:]
        assert (await c.take(checks, [b])).used_usd == [pytest.approx(0.05)]
        assert sent.names == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]  # NOSCRIPT: loaded once, then EVALSHA again
        del sent.names[:]
        await c.take(checks)
        assert sent.names == ["EVALSHA"]
    finally:
        await client.aclose()


async def test_reserved_is_reset_when_its_holds_are_gone(redis_stack: EmbeddedRedis) -> None:
    """The holds' set expired (every hold lapsed and nothing read the budget meanwhile): reserved is 0 again."""
    client = aioredis.Redis.from_url(redis_stack.url)
    try:
        c = RedisCounters(client)
        b = budget()
        await c.init_spend(b, 0.0, 0)
        await c.reserve([b], Hold("gone", 0.4, 60), [0])
        await client.delete(b.redis_key + ":holds")
        assert await c.used(b) == 0.0
        assert float(await client.hget(b.redis_key, "reserved") or -1) == 0.0
    finally:
        await client.aclose()
