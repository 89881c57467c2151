"""The multiplexed Redis client of the request path (`gateway.infra.resp.RespClient`) against a real Redis (the
test run's private server, keys under a prefix of this module's own, removed at the end): replies in order to
concurrent callers, commands of one turn in one write, error replies, a caller that timed out and its late
reply, a lost connection and the next call's reconnect, a silent server, NOSCRIPT, a server that is not there."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.cache.embedded import EmbeddedRedis
from gateway.infra import resp
from gateway.infra.limiter import RedisCounters
from gateway.infra.redis_link import Script, run_script
from gateway.infra.resp import RespClient
from gateway.vocab.limits import BudgetCheck, Hold, RateCheck

PREFIX = "smr:test-resp:"


@pytest.fixture
async def admin(redis_stack: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """redis-py on the same server: to look, and to kill or pause connections; cleans this module's keys."""
    client = aioredis.Redis.from_url(redis_stack.url)
    yield client
    keys = [k async for k in client.scan_iter(match=PREFIX + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def link(admin: aioredis.Redis) -> AsyncIterator[RespClient]:
    client = RespClient.from_kwargs(admin.connection_pool.connection_kwargs, reply_timeout_s=5.0)
    yield client
    await client.aclose()


def key(name: str = "") -> str:
    return f"{PREFIX}{secrets.token_hex(4)}{name}"


async def test_concurrent_callers_get_their_own_replies_in_one_write(link: RespClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    await link.execute("PING")  # connected
    writes: list[int] = []
    flush = resp._Link.flush

    def counted(self: resp._Link) -> None:
        writes.append(len(self.out))
        flush(self)

    monkeypatch.setattr(resp._Link, "flush", counted)
    k = key()
    got = await asyncio.gather(*(link.execute("ECHO", f"reply {i}") for i in range(200)),
                               link.pipeline([("INCRBY", k, 5), ("GET", k), ("ECHO", b"\x00\xff")]))
    assert got[:200] == [f"reply {i}".encode() for i in range(200)]
    assert got[200] == [5, b"5", b"\x00\xff"]
    assert writes == [201]  # every command asked for in one turn: one write, one round trip


async def test_error_replies_are_raised_alone_and_kept_in_place_in_a_pipeline(link: RespClient) -> None:
    k = key()
    await link.execute("SET", k, "not a number", "EX", 60)
    with pytest.raises(ResponseError, match="not an integer"):
        await link.execute("INCR", k)
    got = await link.pipeline([("INCR", k), ("GET", k), ("EVALSHA", "0" * 40, 0)])
    assert isinstance(got[0], ResponseError) and got[1] == b"not a number" and isinstance(got[2], NoScriptError)
    with pytest.raises(NoScriptError):
        await link.execute("EVALSHA", "0" * 40, 0)
    assert await link.execute("GET", k) == b"not a number"  # the connection goes on after errors


async def test_a_timed_out_callers_late_reply_is_dropped_not_handed_to_the_next(link: RespClient,
                                                                                admin: aioredis.Redis) -> None:
    waiting, other = key(":list"), key(":other")
    await admin.set(other, b"mine", ex=60)
    with pytest.raises(TimeoutError):  # the server answers BLPOP later, on the same connection
        await asyncio.wait_for(link.execute("BLPOP", waiting, 5), 0.1)
    get = asyncio.ensure_future(link.execute("GET", other))  # queued behind the blocked BLPOP
    await asyncio.sleep(0.1)
    assert not get.done()
    await admin.rpush(waiting, b"late")
    assert await asyncio.wait_for(get, 5) == b"mine"  # not [waiting, b"late"]
    assert await link.execute("ECHO", "next") == b"next"


async def test_a_lost_connection_fails_what_is_pending_and_the_next_call_connects_again(
        link: RespClient, admin: aioredis.Redis) -> None:
    first = await link.execute("CLIENT", "ID")
    pending = asyncio.ensure_future(link.execute("BLPOP", key(":never"), 10))
    await asyncio.sleep(0.1)
    await admin.execute_command("CLIENT", "KILL", "ID", first)
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pending, 5)
    assert await link.execute("ECHO", "again") == b"again"
    assert await link.execute("CLIENT", "ID") != first


async def test_a_silent_server_drops_the_connection_after_the_reply_timeout(admin: aioredis.Redis) -> None:
    link = RespClient.from_kwargs(admin.connection_pool.connection_kwargs, reply_timeout_s=0.3)
    try:
        await link.execute("PING")
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(RedisConnectionError, match="no reply"):
                await link.execute("GET", key())
            assert 0.25 < time.monotonic() - started < 1.4
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
        assert await link.execute("ECHO", "back") == b"back"
    finally:
        await link.aclose()


async def test_a_script_the_server_lost_is_loaded_again(link: RespClient, admin: aioredis.Redis) -> None:
    script = Script("return {KEYS[1], ARGV[1], " + str(secrets.randbelow(10**9)) + "}")
    k = key()
    assert (await run_script(link, script, [k], ["a"]))[:2] == [k.encode(), b"a"]
    await admin.script_flush()
    assert (await run_script(link, script, [k], ["b"]))[:2] == [k.encode(), b"b"]
    assert await admin.script_exists(script.sha) == [True]


async def test_no_server_is_a_connection_error_for_every_caller_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    link = RespClient("127.0.0.1", port, connect_timeout_s=1.0)
    try:
        got = await asyncio.gather(*(link.execute("PING") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(g, RedisConnectionError) and isinstance(g, RedisError) for g in got), got
    finally:
        await link.aclose()


async def test_the_database_of_the_url_is_selected(admin: aioredis.Redis, redis_stack: EmbeddedRedis) -> None:
    other = aioredis.Redis.from_url(redis_stack.url.rsplit("/", 1)[0] + "/3")
    link = RespClient.from_kwargs(other.connection_pool.connection_kwargs)
    k = key()
    try:
        await link.execute("SET", k, b"in 3", "EX", 60)
        assert await other.get(k) == b"in 3" and await admin.get(k) is None
    finally:
        await other.delete(k)
        await other.aclose()
        await link.aclose()


async def test_the_counters_through_the_client_hold_limits_and_budgets(link: RespClient,
                                                                       admin: aioredis.Redis) -> None:
    counters = RedisCounters(admin, link)
    owner = "resp-" + secrets.token_hex(4)
    check = RateCheck("key", owner, "requests", 3, 1)
    taken = await asyncio.gather(*(counters.take([check]) for _ in range(5)))
    assert sorted(t.refused is None for t in taken) == [False, False, True, True, True]
    budget = BudgetCheck("key", owner, 1.0, "total", "total")
    await counters.init_spend(budget, 0.0, 0)
    holds = [Hold(f"{owner}-{i}", 0.3, 60) for i in range(5)]
    got = await asyncio.gather(*(counters.reserve([budget], h, [0]) for h in holds))
    assert sum(r.refused is None for r in got) == 3  # 3 x 0.3 fit in 1.0, a fourth does not
    held = [h for h, r in zip(holds, got, strict=True) if r.refused is None]
    assert await counters.used(budget) == pytest.approx(0.9)
    assert all(await asyncio.gather(*(counters.settle([budget], h, 0.1) for h in held)))
    await counters.settle([budget], held[0], 0.1)  # a settlement tried again counts once
    assert await counters.used(budget) == pytest.approx(0.3)
    await admin.delete(budget.redis_key, budget.redis_key + ":holds", check.redis_key,
                       *[f"smr:settled:{h.id}" for h in held])
