"""Budget holds that lapse, settlements replayed until the store answers, and key changes heard from
other processes (issue 24; the Redis side runs in tests/integration/test_holds_and_lineage.py)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.db.keys import KeyRecord
from gateway.infra.limiter import MemoryCounters
from gateway.infra.replays import Replays
from gateway.path.auth import Authenticator
from gateway.vocab.limits import BudgetCheck, Hold

BUDGET = BudgetCheck("key", "lineage-1", 1.0, "total", "total")


async def test_a_hold_never_settled_lapses_and_a_settled_one_counts_once() -> None:
    c = MemoryCounters()
    await c.init_spend(BUDGET, 0.0, 0)
    orphan = Hold("a", 0.6, ttl_s=0.05)
    assert (await c.reserve([BUDGET], orphan, [0])).refused is None
    assert (await c.reserve([BUDGET], Hold("b", 0.6, 60), [0])).refused is BUDGET  # 0.6 held, 0.6 more is over
    await asyncio.sleep(0.1)
    assert await c.used(BUDGET) == 0.0  # the orphan lapsed
    live = Hold("c", 0.6, 60)
    assert (await c.reserve([BUDGET], live, [0])).refused is None
    await c.settle([BUDGET], live, 0.25)
    assert await c.used(BUDGET) == pytest.approx(0.25)


async def test_a_failed_settlement_is_replayed_until_the_store_answers() -> None:
    tries: list[float] = []

    async def settle(budgets: list[BudgetCheck], hold: Hold, actual: float) -> bool:
        tries.append(actual)
        if len(tries) < 3:
            raise RedisConnectionError("down")
        return True

    replays = Replays(settle, timeout_s=1.0, interval_s=0.01)
    replays.add([BUDGET], Hold("h", 0.5, 60), 0.1)
    for _ in range(200):
        if not len(replays):
            break
        await asyncio.sleep(0.01)
    assert tries == [0.1, 0.1, 0.1] and replays.replayed == 1 and not len(replays)
    await replays.close()


async def test_a_lookup_under_way_when_a_change_arrives_is_used_once_not_kept() -> None:
    record = KeyRecord(id="k1", name="app", tenant="t", prefix="smr_x", created_at=dt.datetime.now(dt.UTC))
    calls = 0

    class Store:
        async def by_hash(self, digest: bytes) -> tuple[KeyRecord, bytes] | None:
            nonlocal calls
            calls += 1
            auth.on_change("key", "k1")  # announced while this read was on its way
            return record, digest

    auth = Authenticator(True, None, Store(), cache_ttl_s=60)
    await auth.authenticate("Bearer smr_x", None)
    await auth.authenticate("Bearer smr_x", None)
    assert calls == 2  # the first read was not trusted for the cache's 60 s
