"""Redis round trips per request on the default path stay where issue 27 brought them (`bench.redis_roundtrips`
in its smoke mode): a cache-missing `auto` request with a rate-limited, budgeted key costs one round trip to
be admitted (its rate windows, and its budget read for routing) that also reads the exact cache's entry (one
pipeline), one to hold its worst case, and one, after the response, to settle and store the answer in the exact
cache (one write of the gateway's multiplexed client). A count, not a timing."""

from __future__ import annotations

import secrets
import time

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis

from bench.redis_roundtrips import ADMIN, COMMANDS_MAX, ROUND_TRIPS_MAX, measure
from bench.redis_tally import Tally
from gateway.cache.embedded import EmbeddedRedis
from gateway.cache.redis_store import RedisVectorIndex, connect
from gateway.fakes.server import ThreadedFakes
from gateway.infra.limiter import RedisCounters
from gateway.infra.resp import RespClient
from gateway.vocab.limits import RateCheck
from router_core.static_embed import StaticEmbedder
from tests.helpers import GatewayThread, make_settings


def test_a_limited_budgeted_request_costs_three_round_trips(fakes: ThreadedFakes, pg_url: str,
                                                           redis_stack: EmbeddedRedis) -> None:
    count = measure(fakes, pg_url, redis_stack.url, requests=10)
    # (before: 5, the admit script and the cache's GET one round trip each; then 4, the settlement and the
    # cache's SET one each)
    assert count.round_trips_by == {"pipeline: admission: admit + cache get": 1.0, "admission: reserve": 1.0,
                                    "pipeline: cache set + settle: settle": 1.0}, count.round_trips_by
    assert count.round_trips <= ROUND_TRIPS_MAX
    # What Redis ran, the scripts' own commands included (before: 6 round trips, 40 commands)
    assert count.commands <= COMMANDS_MAX, count.commands_by
    assert "script" not in count.commands_by and "exists" not in count.commands_by  # no SCRIPT LOAD / EXISTS


def test_with_the_semantic_cache_a_miss_still_costs_three_round_trips(fakes: ThreadedFakes, pg_url: str,
                                                                     redis_stack: EmbeddedRedis) -> None:
    """The semantic search goes out in the admission's write (before: a round trip of its own, 4 in all), its
    entry counters with it; the entry is stored in the settlement's write."""
    count = measure(fakes, pg_url, redis_stack.url, requests=10, semantic=True)
    assert count.hits == 0
    assert count.round_trips_by == {
        "pipeline: admission: admit + cache get + cache semantic counts + cache semantic search": 1.0,
        "admission: reserve": 1.0, "pipeline: cache add + cache set + settle: settle": 1.0}, count.round_trips_by


def test_a_repeated_request_of_a_limited_key_is_an_exact_hit_read_with_the_admit_script(
        fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    settings = make_settings(fakes, db_url=pg_url, redis={"url": redis_stack.url},
                             auth={"enabled": True, "admin_key": ADMIN}, cache={"enabled": True, "semantic": False})
    tally = Tally()
    with tally.installed(), GatewayThread(settings) as gw, httpx.Client(timeout=30) as http:
        r = http.post(gw.url + "/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"}, json={
            "name": "peek", "tenant": "peek", "rate_limit_rpm": 1000, "budget_usd": 100.0, "budget_period": "month"})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['key']}"}
        body = {"model": "auto", "messages": [{"role": "user", "content": f"Peek {time.time_ns()}: reverse a list?"}]}
        first = http.post(gw.url + "/v1/chat/completions", headers=headers, json=body)
        assert first.status_code == 200 and first.headers["x-smr-cache"] == "miss"
        deadline = time.time() + 10
        while stored(tally) < 1 and time.time() < deadline:  # stored after the response
            time.sleep(0.01)
        before = tally.snapshot()
        second = http.post(gw.url + "/v1/chat/completions", headers=headers, json=body)
        assert second.status_code == 200 and second.headers["x-smr-cache"] == "hit-exact"
        assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
        sent = tally.snapshot() - before
        assert sent["pipeline: admission: admit + cache get"] == 1 and sent["cache get"] == 0, sent
        assert second.headers["x-ratelimit-remaining-requests"] == "998"  # both requests were counted


def test_a_caller_past_its_rate_limit_costs_no_semantic_search(fakes: ThreadedFakes, pg_url: str,
                                                                redis_stack: EmbeddedRedis) -> None:
    """The semantic search goes out with the admission's script, before the refusal is known: once a key has
    been refused, its requests until its Retry-After send the admit script alone (a client hammering past its
    limit would otherwise cost a KNN search per refused request)."""
    settings = make_settings(fakes, db_url=pg_url, redis={"url": redis_stack.url},
                             auth={"enabled": True, "admin_key": ADMIN}, cache={"enabled": True, "semantic": True})
    tally = Tally()
    with tally.installed(), GatewayThread(settings) as gw, httpx.Client(timeout=30) as http:
        r = http.post(gw.url + "/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"}, json={
            "name": "hammer", "tenant": "hammer", "rate_limit_rpm": 1})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['key']}"}

        def ask(i: int) -> tuple[int, dict[str, int]]:
            before = tally.snapshot()
            body = {"model": "auto", "messages": [{"role": "user", "content": f"Hammer {time.time_ns()} {i}?"}]}
            status = http.post(gw.url + "/v1/chat/completions", headers=headers, json=body).status_code
            time.sleep(0.05)
            sent = tally.snapshot() - before
            return status, {k: v for k, v in sent.items() if "admission: admit" in k}

        assert ask(0)[0] == 200
        status, first_refusal = ask(1)
        assert status == 429 and sum(v for k, v in first_refusal.items() if "semantic search" in k) == 1, first_refusal
        for i in range(2, 5):
            status, sent = ask(i)
            assert status == 429 and sent, sent
            assert not any("semantic search" in k for k in sent), sent


def stored(tally: Tally) -> int:
    return sum(n for what, n in tally.snapshot().items() if "cache set" in what)


@pytest.mark.parametrize("via", ["resp", "redis-py"])
async def test_the_admit_script_and_the_peek_survive_a_server_that_lost_its_scripts(redis_stack: EmbeddedRedis,
                                                                                    via: str) -> None:
    client = aioredis.Redis.from_url(redis_stack.url)
    link = RespClient.from_kwargs(client.connection_pool.connection_kwargs) if via == "resp" else None
    try:
        counters = RedisCounters(client, link)
        owner, key = secrets.token_hex(6), f"smr:x:peek:{secrets.token_hex(6)}"
        await client.set(key, b"stored", ex=60)
        await client.script_flush()  # as after a restart or a failover: EVALSHA answers NOSCRIPT
        taken = await counters.take([RateCheck("key", owner, "requests", 2, 1)], peek=key)
        assert taken.refused is None and taken.peeked == (b"stored",)
        assert [s.used for s in taken.states] == [1]
        again = await counters.take([RateCheck("key", owner, "requests", 2, 1)], peek=key + ":absent")
        assert again.peeked == (None,) and [s.used for s in again.states] == [2]
        refused = await counters.take([RateCheck("key", owner, "requests", 2, 1)], peek=key)
        assert refused.refused is not None and refused.peeked == (b"stored",)
    finally:
        if link is not None:
            await link.aclose()
        await client.aclose()


async def test_a_semantic_entry_is_stored_with_its_ttl_in_one_round_trip(redis_stack: EmbeddedRedis) -> None:
    client = connect(redis_stack.url, 1.0)
    tenant = secrets.token_hex(8)
    try:
        dim = StaticEmbedder().dim  # the gateway's index in this shared server: vectors of its size only
        index = await RedisVectorIndex.open(client, dim)
        assert index is not None
        await index.add(tenant + "0", "scope", np.ones(dim, dtype=np.float32), "first", b"{}", 120)  # loads the script
        tally = Tally()
        with tally.installed():
            await index.add(tenant, "scope", np.ones(dim, dtype=np.float32), "a prompt", b'{"answer": 1}', 120,
                            np.ones(3, dtype=np.float32))
        assert tally.snapshot() == {"cache add": 1}  # before: a pipeline of HSET and EXPIRE
        [key] = [k async for k in client.scan_iter(match=f"smr:s3:{tenant}:*")]
        assert 0 < await client.ttl(key) <= 120
        assert await client.hget(key, "prompt") == b"a prompt" and await client.hget(key, "scope") == b"scope"
        assert len(await client.hget(key, "confirm")) == 12  # type: ignore[arg-type]
    finally:
        await client.aclose()
