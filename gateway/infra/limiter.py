"""The counters behind rate limits and budgets: Redis (shared by every gateway process, each step of a
request one atomic Lua script, `gateway.infra.limit_scripts`) or this process's memory (one process only, the
fallback when there is no Redis).

A request costs three calls: `take` (its rate windows, and what its budgets have spent and hold, when routing
wants to know), `reserve` (its worst case held on its budgets) and `settle` (completion tokens onto the token
windows, the hold released and the real cost spent).

Requests per minute are an exact sliding log (a sorted set of the last 60 s of requests, at most the limit
long): no rolling minute holds more than the limit. Tokens per minute, and requests per day, use a sliding
window counter (this window's count plus the previous one's share of the last window), which can let a
bursty client past the limit across a window boundary by up to the previous window's share. Each check
carries its window; one call takes from every counter a request draws on (key and tenant) or from none.

Budgets hold `spent` and `reserved` per owner and period. A request holds its worst-case cost before its
call, only if spent + reserved + that stays within the budget, so concurrent requests never pass it together;
the hold is settled to the real cost when the call ends, once per hold (a retried settlement counts once). A
hold lapses after the request's longest possible life (`limits.hold_ttl_s`), so one never settled stops
counting. A period whose spend Redis does not hold (lost, or never seen) is rebuilt from the request log.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from gateway.infra import limit_scripts
from gateway.infra.redis_link import Arg, PyRedisLink, RedisLink, Script, run_script
from gateway.vocab.limits import WINDOW_MS, BudgetCheck, Hold, RateCheck, RateState

SETTLED_MARK_S = 3600


class Taken:
    """What `take` found: `refused` is the check that did not fit (None: all taken); `used_usd`, per budget
    asked about, its spent plus held (None: the period's spend is not known here)."""

    __slots__ = ("peeked", "refused", "retry_ms", "states", "used_usd")

    def __init__(self, refused: RateCheck | None, retry_ms: int, states: list[RateState],
                 used_usd: list[float | None] | None = None, peeked: tuple[bytes | None, ...] = ()) -> None:
        self.refused = refused
        self.retry_ms = retry_ms
        self.states = states
        self.used_usd = used_usd or []
        self.peeked = peeked  # (value,) of the key `take` was asked to peek at, read in the same round trip


class Reserved:
    """What `reserve` found: `missing` is a budget whose spend is unknown (rebuild it, then retry);
    `refused` one that had no room, with its spent and reserved amounts."""

    __slots__ = ("missing", "refused", "reserved_usd", "spent_usd")

    def __init__(self, missing: BudgetCheck | None = None, refused: BudgetCheck | None = None,
                 spent_usd: float = 0.0, reserved_usd: float = 0.0) -> None:
        self.missing = missing
        self.refused = refused
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd


class Counters(Protocol):
    name: str

    async def take(self, checks: list[RateCheck], budgets: Sequence[BudgetCheck] = (),
                   peek: str | None = None) -> Taken:
        """Every check taken, or none; and, in the same call, what `budgets` have spent and hold (`used`).
        `peek`: a key of the same store to GET in the same round trip (the exact cache's entry), answered in
        `Taken.peeked` as `(value,)`; `()` when this store did not read it (then the caller reads it itself)."""
        ...

    async def reserve(self, budgets: list[BudgetCheck], hold: Hold, ttls: list[int]) -> Reserved: ...

    async def init_spend(self, budget: BudgetCheck, spent: float, ttl: int) -> None: ...

    async def settle(self, budgets: list[BudgetCheck], hold: Hold | None, actual: float,
                     token_checks: Sequence[RateCheck] = (), tokens: int = 0) -> bool:
        """`tokens` onto the token checks' windows; the hold (when given) released and `actual` spent, once per
        hold id. True when the store was reached."""
        ...

    async def used(self, budget: BudgetCheck) -> float | None:
        """Spent plus held by requests in flight, or None when the period's spend is not known here."""
        ...


def _token_windows(checks: Sequence[RateCheck], tokens: int) -> list[Arg]:
    return [x for c in checks if c.kind == "tokens" for x in (c.redis_key, c.window_ms)] if tokens > 0 else []


class RedisCounters:
    """One script call per step (EVALSHA: each script is sent once, and again only to a server that lost it),
    through `link` (`gateway.infra.redis_link`: the gateway's multiplexed `RespClient`; by default the
    redis-py client itself). `client` stays for what is off the request path (the change feed, learning)."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, link: RedisLink | None = None) -> None:
        self.client = client
        self.link: RedisLink = link if link is not None else PyRedisLink(client)
        self._admit = Script(limit_scripts.ADMIT)
        self._reserve = Script(limit_scripts.RESERVE)
        self._settle = Script(limit_scripts.SETTLE)
        self._init = Script(limit_scripts.INIT)
        self._used = Script(limit_scripts.USED)

    async def take(self, checks: list[RateCheck], budgets: Sequence[BudgetCheck] = (),
                   peek: str | None = None) -> Taken:
        args: list[Arg] = [secrets.token_hex(8), len(checks)]
        for c in checks:
            args += [c.redis_key, c.limit, c.cost, c.kind, c.window_ms]
        args += [b.redis_key for b in budgets]
        peeked: tuple[bytes | None, ...] = ()
        if peek is None:
            out = await run_script(self.link, self._admit, (), args)
        else:
            out, peeked = await self._admit_and_get(args, peek)
        refused, retry = int(out[0]), int(out[1])
        states = [RateState(c, float(out[2 + 2 * i]), retry if refused else int(out[3 + 2 * i]))
                  for i, c in enumerate(checks)]
        used = [float(v) if v else None for v in out[2 + 2 * len(checks):]]
        return Taken(checks[refused - 1] if refused else None, retry, states, used, peeked)

    async def _admit_and_get(self, args: list[Arg], key: str) -> tuple[Any, tuple[bytes | None, ...]]:
        """The admit script and a GET in one pipeline (one round trip). A server that lost the script answers
        NOSCRIPT and the script is then called alone (which loads it). A GET that failed reads as not peeked."""
        out, value = await self.link.pipeline((("EVALSHA", self._admit.sha, 0, *args), ("GET", key)))
        if isinstance(out, NoScriptError):
            out = await run_script(self.link, self._admit, (), args)
        elif isinstance(out, Exception):
            raise out
        if isinstance(value, Exception):
            return out, ()
        return out, (value.encode() if isinstance(value, str) else value,)

    async def reserve(self, budgets: list[BudgetCheck], hold: Hold, ttls: list[int]) -> Reserved:
        args: list[Arg] = [repr(hold.amount), hold.member, math.ceil(hold.ttl_s * 1000)]
        for b, ttl in zip(budgets, ttls, strict=True):
            args += [repr(b.budget_usd), ttl]
        out = await run_script(self.link, self._reserve, [b.redis_key for b in budgets], args)
        i = int(out[0])
        if i < 0:
            return Reserved(missing=budgets[-i - 1])
        if i > 0:
            return Reserved(refused=budgets[i - 1], spent_usd=float(out[1]), reserved_usd=float(out[2]))
        return Reserved()

    async def init_spend(self, budget: BudgetCheck, spent: float, ttl: int) -> None:
        await run_script(self.link, self._init, [budget.redis_key], [repr(spent), ttl])

    async def settle(self, budgets: list[BudgetCheck], hold: Hold | None, actual: float,
                     token_checks: Sequence[RateCheck] = (), tokens: int = 0) -> bool:
        windows = _token_windows(token_checks, tokens)
        if hold is None and not windows:
            return True
        keys = [b.redis_key for b in budgets] if hold is not None else []
        member, mark = (hold.member, f"smr:settled:{hold.id}") if hold is not None else ("", "")
        await run_script(self.link, self._settle, keys, [member, repr(actual), mark, SETTLED_MARK_S, tokens, *windows])
        return True

    async def used(self, budget: BudgetCheck) -> float | None:
        out = await run_script(self.link, self._used, [budget.redis_key], [])
        return None if out is None else float(out[0]) + float(out[1])


class MemoryCounters:
    """The same semantics in this process's memory: for one process without Redis."""

    name = "memory"

    def __init__(self) -> None:
        self._counts: dict[str, tuple[float, int]] = {}  # "<base>:<window>" -> (expires, count)
        self._logs: dict[str, deque[int]] = {}           # requests: the last minute's times, ms
        self._budgets: dict[str, list[float]] = {}        # key -> [spent, reserved]
        self._holds: dict[str, dict[str, tuple[float, float]]] = {}  # key -> hold -> (lapses at, amount)

    def _get(self, key: str, now: float) -> int:
        hit = self._counts.get(key)
        if hit is None or hit[0] < now:
            self._counts.pop(key, None)
            return 0
        return hit[1]

    def _incr(self, key: str, by: int, now: float, window_ms: int) -> None:
        self._counts[key] = (now + 2 * window_ms / 1000, self._get(key, now) + by)

    async def take(self, checks: list[RateCheck], budgets: Sequence[BudgetCheck] = (),
                   peek: str | None = None) -> Taken:
        used_usd = [await self.used(b) for b in budgets]
        now = time.time()
        now_ms = int(now * 1000)
        used: list[float] = []
        resets: list[int] = []
        refused: RateCheck | None = None
        retry = 0
        for c in checks:
            w = c.window_ms
            cur, into = divmod(now_ms, w)
            frac = into / w
            if c.kind == "requests" and w <= WINDOW_MS:
                log = self._logs.setdefault(c.redis_key, deque())
                while log and log[0] <= now_ms - w:
                    log.popleft()
                used.append(len(log))
                resets.append(log[0] + w - now_ms if log else 0)
                if refused is None and c.cost > 0 and len(log) + c.cost > c.limit:
                    refused = c
                    k = max(len(log) + c.cost - c.limit - 1, 0)
                    retry = log[k] + w - now_ms if k < len(log) else w
                continue
            p = self._get(f"{c.redis_key}:{cur - 1}", now)
            cc = self._get(f"{c.redis_key}:{cur}", now)
            u = p * (1 - frac) + cc
            used.append(u)
            resets.append(w - into)
            if refused is None and c.cost > 0 and u + c.cost > c.limit:
                refused = c
                retry = w - into
                if p > 0 and cc + c.cost <= c.limit:
                    retry = math.ceil(w * (u + c.cost - c.limit) / p)
                elif cc > 0 and c.cost <= c.limit:
                    retry = (w - into) + math.ceil(w * (1 - (c.limit - c.cost) / cc))
        if refused is not None:
            return Taken(refused, retry, [RateState(c, u, retry) for c, u in zip(checks, used, strict=True)],
                         used_usd)
        for i, c in enumerate(checks):
            if c.cost <= 0:
                continue
            w = c.window_ms
            if c.kind == "requests" and w <= WINDOW_MS:
                self._logs[c.redis_key].extend([now_ms] * c.cost)
                resets[i] = resets[i] or w
            else:
                self._incr(f"{c.redis_key}:{now_ms // w}", c.cost, now, w)
            used[i] += c.cost
        return Taken(None, 0, [RateState(c, u, r) for c, u, r in zip(checks, used, resets, strict=True)], used_usd)

    def _held(self, key: str, now: float) -> float:
        """What the live holds on a budget add up to (lapsed ones dropped), kept in its `reserved`."""
        holds = self._holds[key] = {m: h for m, h in self._holds.get(key, {}).items() if h[0] > now}
        held = sum(amount for _, amount in holds.values())
        if key in self._budgets:
            self._budgets[key][1] = held
        return held

    async def reserve(self, budgets: list[BudgetCheck], hold: Hold, ttls: list[int]) -> Reserved:
        now = time.monotonic()
        for b in budgets:
            if b.redis_key not in self._budgets:
                return Reserved(missing=b)
        for b in budgets:
            spent, reserved = self._budgets[b.redis_key][0], self._held(b.redis_key, now)
            if spent + reserved + hold.amount > b.budget_usd:
                return Reserved(refused=b, spent_usd=spent, reserved_usd=reserved)
        for b in budgets:
            self._holds[b.redis_key][hold.member] = (now + hold.ttl_s, hold.amount)
            self._held(b.redis_key, now)
        return Reserved()

    async def init_spend(self, budget: BudgetCheck, spent: float, ttl: int) -> None:
        if budget.redis_key not in self._budgets:
            self._budgets[budget.redis_key] = [spent, 0.0]
            self._held(budget.redis_key, time.monotonic())

    async def used(self, budget: BudgetCheck) -> float | None:
        entry = self._budgets.get(budget.redis_key)
        return None if entry is None else entry[0] + self._held(budget.redis_key, time.monotonic())

    async def settle(self, budgets: list[BudgetCheck], hold: Hold | None, actual: float,
                     token_checks: Sequence[RateCheck] = (), tokens: int = 0) -> bool:
        now = time.time()
        for c in token_checks:
            if c.kind == "tokens" and tokens > 0:
                self._incr(f"{c.redis_key}:{int(now * 1000) // c.window_ms}", tokens, now, c.window_ms)
        if hold is None:
            return True
        for b in budgets:
            if b.redis_key in self._budgets:
                self._holds.get(b.redis_key, {}).pop(hold.member, None)
                self._held(b.redis_key, time.monotonic())
                self._budgets[b.redis_key][0] += actual
        return True
