"""The Lua scripts behind the Redis counters (`gateway.infra.limiter.RedisCounters`): one atomic call per step
of a request, each loaded once (EVALSHA; a server that lost them gets them again on NOSCRIPT).

    ADMIT    every rate window of the request (key and tenant; requests and tokens, per minute and per
             day) taken together or none, and what its budgets have spent and hold (read for routing)
    RESERVE  the request's worst case held on every budget, or on none
    SETTLE   completion tokens onto the token windows, and the hold released and its real cost spent,
             once per hold id
    INIT     a period's spend rebuilt from the request log;  USED  a budget's spent plus held

Requests per minute are an exact sliding log (a sorted set of the window's requests); tokens per minute and
requests per day a sliding window counter (this window's count plus the previous one's weighted share).
Budgets are a hash (`spent`, `reserved`) per owner and period, and `<budget>:holds`, a sorted set of
"<id>|<amount>" by when each hold lapses; `reserved` is the live holds' sum. Every budget step first drops
the lapsed holds (`lapse`). Amounts are written with 17 significant digits: what is read back is exact.
A script's numbers come back as strings (Redis truncates Lua numbers to integers).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(x) return string.format('%.17g', x) end
"""

# lapse(k, now, member): drops k's lapsed holds (and `member`, when given) from its holds; returns spent,
# reserved (the live holds' sum) and whether reserved changed (the caller writes it), or nil when the period's
# spend is not in Redis. Without lapsed holds and nothing held it runs two commands.
_LAPSE = _NOW + """
local function lapse(k, now, member)
  local hk = k .. ':holds'
  local gone = redis.call('ZRANGEBYSCORE', hk, '-inf', now)
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', hk, '-inf', now) end
  if member and redis.call('ZREM', hk, member) == 1 then gone[#gone + 1] = member end
  local v = redis.call('HMGET', k, 'spent', 'reserved')
  if not v[1] then return nil, 0, false end
  local r0 = tonumber(v[2] or '0')
  local r = r0
  for _, m in ipairs(gone) do r = r - tonumber(string.match(m, '|(.*)$')) end
  if r < 1e-12 or redis.call('ZCARD', hk) == 0 then r = 0 end
  return tonumber(v[1]), r, r ~= r0
end
"""

# ARGV: request id, n, then n times (counter base, limit, cost, "requests"|"tokens", window ms), then the
# budgets' keys. Returns refused (1-based check, 0: all taken), retry ms, then per check its use (string) and
# reset ms, then per budget spent + held (string; "" when not in Redis).
ADMIT = _LAPSE + """
local id, n = ARGV[1], tonumber(ARGV[2])
local used, resets, curs = {}, {}, {}
local refused, retry = 0, 0
for i = 1, n do
  local j = 5 * i - 2
  local base, limit, cost, kind = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), ARGV[j + 3]
  local w = tonumber(ARGV[j + 4])
  local cur = math.floor(now / w)
  local into = now % w
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
    -- this window's count plus the previous one's, weighted by its share of the last window
    local cp = redis.call('MGET', base .. ':' .. cur, base .. ':' .. (cur - 1))
    local c, p = tonumber(cp[1] or '0'), tonumber(cp[2] or '0')
    used[i] = p * (1 - into / w) + c
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
    local j = 5 * i - 2
    local base, cost, kind, w = ARGV[j], tonumber(ARGV[j + 2]), ARGV[j + 3], tonumber(ARGV[j + 4])
    if cost > 0 then
      if kind == 'requests' and w <= 60000 then
        redis.call('ZADD', base, now, id .. ':' .. i)
        redis.call('PEXPIRE', base, w)
        if resets[i] == 0 then resets[i] = w end
      else
        -- a window's key lives two windows from its first count: made here, so its expiry is set once
        local k = base .. ':' .. curs[i]
        if redis.call('INCRBY', k, cost) == cost then redis.call('PEXPIRE', k, w * 2) end
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
for i = 5 * n + 3, #ARGV do
  local spent, r, changed = lapse(ARGV[i], now)
  if changed then redis.call('HSET', ARGV[i], 'reserved', fmt(r)) end
  out[#out + 1] = spent and fmt(spent + r) or ''
end
return out
"""

# KEYS: the budgets. ARGV: amount, hold member, hold ms, then per budget its limit and the period key's TTL
# (0: none). Returns {0} held; {-i} budget i's spend is not in Redis; {i, spent, reserved} budget i is full.
RESERVE = _LAPSE + """
local amount, member, hold_ms = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local spent, held, changed = {}, {}, {}
local function keep(upto)
  for i = 1, upto do
    if changed[i] then redis.call('HSET', KEYS[i], 'reserved', fmt(held[i])) end
  end
end
for i = 1, #KEYS do
  spent[i], held[i], changed[i] = lapse(KEYS[i], now)
  if not spent[i] then keep(i - 1); return {-i, '0', '0'} end
end
for i = 1, #KEYS do
  if spent[i] + held[i] + amount > tonumber(ARGV[2 * i + 2]) then
    keep(#KEYS)
    return {i, fmt(spent[i]), fmt(held[i])}
  end
end
for i = 1, #KEYS do
  local hk = KEYS[i] .. ':holds'
  redis.call('HSET', KEYS[i], 'reserved', fmt(held[i] + amount))
  redis.call('ZADD', hk, now + hold_ms, member)
  if redis.call('PTTL', hk) < hold_ms then redis.call('PEXPIRE', hk, hold_ms) end
  local ttl = tonumber(ARGV[2 * i + 3])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {0, '0', '0'}
"""

# KEYS: the budgets (none: tokens only). ARGV: hold member, actual cost, once-only mark, its TTL s, tokens,
# then per token window its counter base and window ms. The tokens are added every call (a replay carries
# none); the budgets once per mark: a settlement tried again after a timeout counts once. A lapsed hold's
# spend still counts. Returns 1 when the budgets were settled now.
SETTLE = _LAPSE + """
local tokens = tonumber(ARGV[5])
for i = 6, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1])
  local k = ARGV[i] .. ':' .. math.floor(now / w)
  if redis.call('INCRBY', k, tokens) == tokens then redis.call('PEXPIRE', k, w * 2) end
end
if #KEYS == 0 or not redis.call('SET', ARGV[3], '1', 'NX', 'EX', tonumber(ARGV[4])) then return 0 end
local actual = tonumber(ARGV[2])
for i = 1, #KEYS do
  local spent, r = lapse(KEYS[i], now, ARGV[1])
  if spent then redis.call('HSET', KEYS[i], 'spent', fmt(spent + actual), 'reserved', fmt(r)) end
end
return 1
"""

# A period's spend rebuilt from the log (kept if another process wrote it first); what is held is what the
# live holds add up to. ARGV: spent, the period key's TTL (0: none).
INIT = _LAPSE + """
local spent, r, changed = lapse(KEYS[1], now)
if changed then redis.call('HSET', KEYS[1], 'reserved', fmt(r)) end
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then
  r = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1] .. ':holds', 0, -1)) do
    r = r + tonumber(string.match(m, '|(.*)$'))
  end
  redis.call('HSET', KEYS[1], 'reserved', fmt(r))
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# Spent and held (strings), or nil when the period's spend is not in Redis.
USED = _LAPSE + """
local spent, r, changed = lapse(KEYS[1], now)
if not spent then return nil end
if changed then redis.call('HSET', KEYS[1], 'reserved', fmt(r)) end
return {fmt(spent), fmt(r)}
"""

SCRIPTS = {"admit": ADMIT, "reserve": RESERVE, "settle": SETTLE, "init": INIT, "used": USED}
