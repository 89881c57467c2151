"""The counters behind rate limits and budgets: Redis (shared by every gateway process, each step one atomic
Lua script) or this process's memory (one process only, the fallback when there is no Redis).

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
from typing import Protocol

import redis.asyncio as aioredis

from gateway.limits import WINDOW_MS, BudgetCheck, Hold, RateCheck, RateState

_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local n = (#ARGV - 1) / 5
local used, resets, curs = {}, {}, {}
local refused, retry = 0, 0
for i = 1, n do
  local j = 5 * i - 3
  local base, limit, cost, kind = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), ARGV[j + 3]
  local w = tonumber(ARGV[j + 4])
  local cur = math.floor(now / w)
  local into = now % w
  local frac = into / w
  curs[i] = cur
  local over = false
  if kind == 'requests' and w <= 60000 then
    -- an exact log of the window's requests: no rolling window holds more than the limit
    redis.call('ZREMRANGEBYSCORE', base, '-inf', now - w)
    used[i] = redis.call('ZCARD', base)
    local oldest = redis.call('ZRANGE', base, 0, 0, 'WITHSCORES')
    resets[i] = oldest[2] and (tonumber(oldest[2]) + w - now) or 0
    over = cost > 0 and used[i] + cost > limit
    if over and refused == 0 then
      local k = math.max(used[i] + cost - limit - 1, 0)
      local nth = redis.call('ZRANGE', base, k, k, 'WITHSCORES')
      retry = nth[2] and (tonumber(nth[2]) + w - now) or w
    end
  else
    -- tokens: this window's count plus the previous one's, weighted by its share of the last window
    local c = tonumber(redis.call('GET', base .. ':' .. cur) or '0')
    local p = tonumber(redis.call('GET', base .. ':' .. (cur - 1)) or '0')
    used[i] = p * (1 - frac) + c
    resets[i] = w - into
    over = cost > 0 and used[i] + cost > limit
    if over and refused == 0 then
      retry = w - into
      if p > 0 and c + cost <= limit then
        retry = math.ceil(w * (used[i] + cost - limit) / p)
      elseif c > 0 and cost <= limit then
        retry = (w - into) + math.ceil(w * (1 - (limit - cost) / c))
      end
    end
  end
  if over and refused == 0 then refused = i end
end
if refused == 0 then
  for i = 1, n do
    local j = 5 * i - 3
    local base, cost, kind, w = ARGV[j], tonumber(ARGV[j + 2]), ARGV[j + 3], tonumber(ARGV[j + 4])
    local cur = curs[i]
    if cost > 0 then
      if kind == 'requests' and w <= 60000 then
        redis.call('ZADD', base, now, id .. ':' .. i)
        redis.call('PEXPIRE', base, w)
        if resets[i] == 0 then resets[i] = w end
      else
        local k = base .. ':' .. cur
        redis.call('INCRBY', k, cost)
        redis.call('PEXPIRE', k, w * 2)
      end
      used[i] = used[i] + cost
    end
  end
end
local out = {refused, retry}
for i = 1, n do
  out[#out + 1] = tostring(used[i])
  out[#out + 1] = resets[i]
end
return out
"""

_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1])
  local k = ARGV[i] .. ':' .. math.floor(now / w)
  redis.call('INCRBY', k, tonumber(ARGV[1]))
  redis.call('PEXPIRE', k, w * 2)
end
return 1
"""

# Holds live in `<budget>:holds`, a sorted set of "<id>|<amount>" by when they lapse; `reserved` is their sum.
# Every budget script first drops the lapsed ones (a hold whose settlement never came), and `member` if given.
_LAPSE = """
local function lapse(k, now, member)
  local hk = k .. ':holds'
  local gone = redis.call('ZRANGEBYSCORE', hk, '-inf', now)
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', hk, '-inf', now) end
  if member and redis.call('ZREM', hk, member) == 1 then gone[#gone + 1] = member end
  if redis.call('EXISTS', k) == 0 then return end
  local r = 0
  if redis.call('ZCARD', hk) > 0 then
    r = tonumber(redis.call('HGET', k, 'reserved') or '0')
    for _, m in ipairs(gone) do r = r - tonumber(string.match(m, '|(.*)$')) end
    if r < 1e-12 then r = 0 end
  end
  redis.call('HSET', k, 'reserved', tostring(r))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_RESERVE = _LAPSE + """
local amount, member, hold_ms = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 1, #KEYS do
  lapse(KEYS[i], now)
  if redis.call('EXISTS', KEYS[i]) == 0 then return {-i, '0', '0'} end
end
for i = 1, #KEYS do
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
  if spent + reserved + amount > tonumber(ARGV[2 * i + 2]) then return {i, tostring(spent), tostring(reserved)} end
end
for i = 1, #KEYS do
  local hk = KEYS[i] .. ':holds'
  redis.call('HINCRBYFLOAT', KEYS[i], 'reserved', amount)
  redis.call('ZADD', hk, now + hold_ms, member)
  if redis.call('PTTL', hk) < hold_ms then redis.call('PEXPIRE', hk, hold_ms) end
  local ttl = tonumber(ARGV[2 * i + 3])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {0, '0', '0'}
"""

# Once per hold id (the mark lasts SETTLED_MARK_S): a settlement tried again after a timeout, whose first
# try may still run late, counts once. A lapsed hold's spend still counts.
_SETTLE = _LAPSE + """
if redis.call('SET', ARGV[3], '1', 'NX', 'EX', tonumber(ARGV[4])) == false then return 0 end
for i = 1, #KEYS do
  lapse(KEYS[i], now, ARGV[1])
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HINCRBYFLOAT', KEYS[i], 'spent', ARGV[2]) end
end
return 1
"""

# A period's spend rebuilt from the log; what is held is what the live holds add up to.
_INIT = _LAPSE + """
lapse(KEYS[1], now)
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then
  local r = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1] .. ':holds', 0, -1)) do
    r = r + tonumber(string.match(m, '|(.*)$'))
  end
  redis.call('HSET', KEYS[1], 'reserved', tostring(r))
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

_USED = _LAPSE + """
lapse(KEYS[1], now)
return redis.call('HMGET', KEYS[1], 'spent', 'reserved')
"""
SETTLED_MARK_S = 3600


class Taken:
    """What `take` found: `refused` is the check that did not fit (None: all taken)."""

    __slots__ = ("refused", "retry_ms", "states")

    def __init__(self, refused: RateCheck | None, retry_ms: int, states: list[RateState]) -> None:
        self.refused = refused
        self.retry_ms = retry_ms
        self.states = states


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

    async def take(self, checks: list[RateCheck]) -> Taken: ...

    async def add_tokens(self, checks: list[RateCheck], tokens: int) -> None: ...

    async def reserve(self, budgets: list[BudgetCheck], hold: Hold, ttls: list[int]) -> Reserved: ...

    async def init_spend(self, budget: BudgetCheck, spent: float, ttl: int) -> None: ...

    async def settle(self, budgets: list[BudgetCheck], hold: Hold, actual: float) -> bool:
        """The hold released and `actual` spent, once per hold id; True when the store was reached."""
        ...

    async def used(self, budget: BudgetCheck) -> float | None:
        """Spent plus held by requests in flight, or None when the period's spend is not known here."""
        ...


class RedisCounters:
    name = "redis"

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._rate = client.register_script(_RATE)
        self._add = client.register_script(_ADD)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._init = client.register_script(_INIT)
        self._used = client.register_script(_USED)

    async def take(self, checks: list[RateCheck]) -> Taken:
        args: list[str | int] = [secrets.token_hex(8)]
        for c in checks:
            args += [c.redis_key, c.limit, c.cost, c.kind, c.window_ms]
        out = await self._rate(keys=[], args=args)
        refused, retry = int(out[0]), int(out[1])
        states = [RateState(c, float(out[2 + 2 * i]), retry if refused else int(out[3 + 2 * i]))
                  for i, c in enumerate(checks)]
        return Taken(checks[refused - 1] if refused else None, retry, states)

    async def add_tokens(self, checks: list[RateCheck], tokens: int) -> None:
        bases: list[str | int] = [x for c in checks if c.kind == "tokens" for x in (c.redis_key, c.window_ms)]
        if bases and tokens > 0:
            await self._add(keys=[], args=[tokens, *bases])

    async def reserve(self, budgets: list[BudgetCheck], hold: Hold, ttls: list[int]) -> Reserved:
        args: list[str | float | int] = [repr(hold.amount), hold.member, math.ceil(hold.ttl_s * 1000)]
        for b, ttl in zip(budgets, ttls, strict=True):
            args += [repr(b.budget_usd), ttl]
        out = await self._reserve(keys=[b.redis_key for b in budgets], args=args)
        i = int(out[0])
        if i < 0:
            return Reserved(missing=budgets[-i - 1])
        if i > 0:
            return Reserved(refused=budgets[i - 1], spent_usd=float(out[1]), reserved_usd=float(out[2]))
        return Reserved()

    async def init_spend(self, budget: BudgetCheck, spent: float, ttl: int) -> None:
        await self._init(keys=[budget.redis_key], args=[repr(spent), ttl])

    async def settle(self, budgets: list[BudgetCheck], hold: Hold, actual: float) -> bool:
        mark = f"smr:settled:{hold.id}"
        await self._settle(keys=[b.redis_key for b in budgets],
                           args=[hold.member, repr(actual), mark, SETTLED_MARK_S])
        return True

    async def used(self, budget: BudgetCheck) -> float | None:
        spent, reserved = await self._used(keys=[budget.redis_key], args=[])
        return None if spent is None else float(spent) + float(reserved or 0)


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

    async def take(self, checks: list[RateCheck]) -> Taken:
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
            return Taken(refused, retry, [RateState(c, u, retry) for c, u in zip(checks, used, strict=True)])
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
        return Taken(None, 0, [RateState(c, u, r) for c, u, r in zip(checks, used, resets, strict=True)])

    async def add_tokens(self, checks: list[RateCheck], tokens: int) -> None:
        now = time.time()
        for c in checks:
            if c.kind == "tokens" and tokens > 0:
                self._incr(f"{c.redis_key}:{int(now * 1000) // c.window_ms}", tokens, now, c.window_ms)

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

    async def settle(self, budgets: list[BudgetCheck], hold: Hold, actual: float) -> bool:
        for b in budgets:
            if b.redis_key in self._budgets:
                self._holds.get(b.redis_key, {}).pop(hold.member, None)
                self._held(b.redis_key, time.monotonic())
                self._budgets[b.redis_key][0] += actual
        return True
