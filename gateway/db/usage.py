"""The request log's read side: usage aggregates, one request, the most recent ones (`LogQueries`, built once
per app and handed to the handlers), and the time window they take (`parse_time`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.vocab.errors import InvalidRequest

View = Literal["served", "shadow", "learning"]
GroupBy = Literal["all", "hour", "day", "model", "tier", "key", "tenant"]
GROUP_SQL: dict[str, str] = {
    "all": "'all'",
    "hour": "to_char(date_trunc('hour', ts AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:00')",
    "day": "to_char(date_trunc('day', ts AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    # A request refused or failed before a model was chosen is grouped as "error", not as a tier or model.
    "model": "coalesce(backend, CASE WHEN http_status >= 400 THEN 'error' ELSE '(none)' END)",
    "tier": "coalesce(tier, CASE WHEN http_status >= 400 THEN 'error' ELSE 'direct' END)",
    "key": "coalesce(key_id::text, '(no key)')",
    "tenant": "coalesce(tenant, '(none)')",
}


def parse_time(value: str | None, param: str) -> dt.datetime | None:
    """An ISO 8601 date or time (UTC when it names no zone), from a query parameter or a flag."""
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"'{param}' must be an ISO 8601 date or time, got {value!r}", param=param,
                             code="invalid_value") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


MONEY_DIGITS = 10  # dollars to 1e-10, as /v1/complete's estimates: sums of float costs are not shown as noise


def money(usd: float) -> float:
    """A sum of dollars as money: 0.00037499999999999995 is 0.000375."""
    return round(float(usd), MONEY_DIGITS) + 0.0  # + 0.0: no -0.0


class UsageGroup(msgspec.Struct, frozen=True):
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    baseline_cost_usd: float
    savings_usd: float            # routing + cache, against always calling the baseline model
    routing_savings_usd: float    # the baseline model's cost minus the routed models'
    cache_savings_usd: float      # cache hits: what the routed model would have cost again
    savings_pct: float
    cache_hit_rate: float
    p50_latency_ms: float
    p95_latency_ms: float
    errors: int
    fallbacks: int = 0            # requests answered after another backend of the chain failed


class UsageReport(msgspec.Struct, frozen=True):
    group_by: str
    tenant: str | None
    data: list[UsageGroup] | list[ShadowGroup]
    object: str = "usage.report"
    view: str = "served"  # or "shadow", or "learning" (learning's own calls)
    from_: dt.datetime | None = msgspec.field(default=None, name="from")
    to: dt.datetime | None = None


def _where(start: dt.datetime | None, end: dt.datetime | None, tenant: str | None,
           key: str | None = None, learning: bool = False) -> tuple[list[str], list[object]]:
    # Learning's own calls (gateway.learning: endpoint "learning") are counted apart from the traffic served.
    where: list[str] = ["endpoint = 'learning'" if learning else "endpoint <> 'learning'"]
    params: list[object] = []
    if start is not None:
        where.append("ts >= %s")
        params.append(start)
    if end is not None:
        where.append("ts < %s")
        params.append(end)
    if tenant is not None:
        # learning's rows carry no tenant (no tenant's bill or budget counts them): a tenant's are those of the
        # requests of its that were sampled (judgements) or whose semantic hit was checked (cache_checks)
        if learning:
            where.append("client_request_id IN (SELECT request_id FROM judgements WHERE tenant = %s "
                         "UNION ALL SELECT request_id FROM cache_checks WHERE tenant = %s)")
            params.append(tenant)
        else:
            where.append("tenant = %s")
        params.append(tenant)
    if key is not None:
        # learning's rows carry no key either: a key's are those of the requests it made
        where.append("client_request_id IN (SELECT request_id FROM request_log WHERE key_id = %s::uuid)" if learning
                     else "key_id = %s::uuid")
        params.append(key)
    return where, params


async def _fetch(pool: AsyncConnectionPool, sql: str, params: list[object]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall()


async def usage(pool: AsyncConnectionPool, group_by: GroupBy, start: dt.datetime | None, end: dt.datetime | None,
                tenant: str | None, key: str | None = None, learning: bool = False) -> list[UsageGroup]:
    """The traffic served, or (`learning`) what learning's reference and judge calls cost."""
    where, params = _where(start, end, tenant, key, learning)
    sql = f"""
        SELECT {GROUP_SQL[group_by]} AS "group", count(*) AS requests,
               coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
               coalesce(sum(completion_tokens), 0) AS completion_tokens,
               coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(baseline_cost_usd), 0) AS baseline_cost_usd,
               coalesce(sum(savings_usd), 0) AS savings_usd,
               coalesce(sum(cache_savings_usd), 0) AS cache_savings_usd,
               avg(CASE WHEN cache_status LIKE 'hit%%' THEN 1.0 ELSE 0.0 END) AS cache_hit_rate,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,
               count(*) FILTER (WHERE http_status >= 400) AS errors,
               count(*) FILTER (WHERE attempts > 1 AND http_status < 400) AS fallbacks
        FROM request_log WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"""
    rows = await _fetch(pool, sql, params)
    out = []
    for r in rows:
        base, saved, cached = money(r["baseline_cost_usd"]), money(r["savings_usd"]), money(r["cache_savings_usd"])
        out.append(UsageGroup(
            group=r["group"], requests=r["requests"], prompt_tokens=int(r["prompt_tokens"]),
            completion_tokens=int(r["completion_tokens"]), cost_usd=money(r["cost_usd"]), baseline_cost_usd=base,
            savings_usd=saved, routing_savings_usd=money(saved - cached), cache_savings_usd=cached,
            savings_pct=round(100 * saved / base, 3) if base else 0.0,
            cache_hit_rate=round(float(r["cache_hit_rate"] or 0), 4),
            p50_latency_ms=round(float(r["p50_latency_ms"] or 0), 2),
            p95_latency_ms=round(float(r["p95_latency_ms"] or 0), 2), errors=int(r["errors"]),
            fallbacks=int(r["fallbacks"])))
    return out


# In the shadow view, tier and model are what routing would have chosen.
SHADOW_GROUP_SQL = {**GROUP_SQL, "tier": "shadow_tier", "model": "shadow_backend"}


class ShadowGroup(msgspec.Struct, frozen=True):
    """Shadow mode: what requests cost as served, and what they would have cost routed."""

    group: str
    requests: int                 # requests served with a shadow decision (answered, not from the cache)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float               # as served (the models named)
    shadow_cost_usd: float        # the same tokens on the models routing would have chosen
    shadow_savings_usd: float     # cost_usd - shadow_cost_usd: what switching routing on would save
    shadow_savings_pct: float


async def shadow_usage(pool: AsyncConnectionPool, group_by: GroupBy, start: dt.datetime | None,
                       end: dt.datetime | None, tenant: str | None, key: str | None = None) -> list[ShadowGroup]:
    where, params = _where(start, end, tenant, key)
    sql = f"""
        SELECT {SHADOW_GROUP_SQL[group_by]} AS "group", count(*) AS requests,
               coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
               coalesce(sum(completion_tokens), 0) AS completion_tokens,
               coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(shadow_cost_usd), 0) AS shadow_cost_usd
        FROM request_log WHERE shadow_cost_usd IS NOT NULL AND {' AND '.join(where)} GROUP BY 1 ORDER BY 1"""
    rows = await _fetch(pool, sql, params)
    out = []
    for r in rows:
        cost, shadow = money(r["cost_usd"]), money(r["shadow_cost_usd"])
        out.append(ShadowGroup(r["group"], r["requests"], int(r["prompt_tokens"]), int(r["completion_tokens"]),
                               cost, shadow, money(cost - shadow),
                               round(100 * (cost - shadow) / cost, 3) if cost else 0.0))
    return out


class LoggedRequest(msgspec.Struct, frozen=True):
    """One request as the log has it (GET /v1/requests/{id})."""

    id: str
    created: dt.datetime
    endpoint: str
    status: int
    latency_ms: float
    stream: bool
    tenant: str | None
    smr: dict[str, Any] | None
    error_type: str | None = None
    client_request_id: str | None = None  # the client's x-request-id, when it sent one
    prompt: str | None = None             # the messages as "role: text" lines, only when log.prompts is on
    prompt_tokens: int = 0
    completion_tokens: int = 0
    object: str = "request"


async def logged_request(pool: AsyncConnectionPool, request_id: str, tenant: str | None) -> LoggedRequest | None:
    """The request with this id, if it is `tenant`'s (None: any tenant's, for the admin).

    The id is the gateway's (`req_...`, unique) or a client's x-request-id. The gateway's id wins: a client
    may send another tenant's `req_...` id as its own, and that never hides the request it names. A client's
    id may repeat: the latest of them."""
    sql = ("SELECT request_id AS id, ts AS created, endpoint, http_status AS status, latency_ms, stream, tenant, "
           "explanation AS smr, error_type, client_request_id, prompt, prompt_tokens, completion_tokens "
           "FROM request_log "
           "WHERE (request_id = %s OR client_request_id = %s)")
    params: list[object] = [request_id, request_id]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    sql += " ORDER BY (request_id = %s) DESC, ts DESC LIMIT 1"
    params.append(request_id)
    rows = await _fetch(pool, sql, params)
    return msgspec.convert(rows[0], LoggedRequest) if rows else None


class RecentRequest(msgspec.Struct, frozen=True):
    """A line of the dashboard's recent requests (GET /v1/requests)."""

    id: str
    created: dt.datetime
    endpoint: str
    status: int
    tier: str | None
    model: str | None
    classifier: str | None
    score: float | None
    cost_usd: float
    savings_usd: float
    cache: str
    latency_ms: float
    tenant: str | None
    error_type: str | None = None  # an error's code (e.g. budget_exceeded) or type, when status >= 400


async def recent_requests(pool: AsyncConnectionPool, start: dt.datetime | None, end: dt.datetime | None,
                          tenant: str | None, key: str | None, limit: int) -> list[RecentRequest]:
    where, params = _where(start, end, tenant, key)
    sql = ("SELECT request_id AS id, ts AS created, endpoint, http_status AS status, tier, backend AS model, "
           "classifier, score, cost_usd, savings_usd, cache_status AS cache, latency_ms, tenant, error_type "
           "FROM request_log "
           f"WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT %s")
    rows = await _fetch(pool, sql, [*params, limit])
    return [msgspec.convert({**r, "cost_usd": money(r["cost_usd"]), "savings_usd": money(r["savings_usd"])},
                            RecentRequest) for r in rows]


class JudgedRow(msgspec.Struct, frozen=True):
    """What the dashboard's quality/cost curve reads of a judgement: its pair, its verdict, the router's score."""

    tier: str
    reference_tier: str
    verdict: str
    score: float | None


class LearningFigures(msgspec.Struct, frozen=True):
    """The raw figures of learning in a window (a tenant's, a key's or all): see gateway.learning.report."""

    auto_requests: int          # answered `auto` requests (what sampling draws from)
    serving_cost_usd: float     # the traffic served
    learning_cost_usd: float    # learning's own calls (reference answers, judges, fresh answers for cache checks)
    learning_calls: int
    judged: list[JudgedRow]
    hit_checks: dict[str, int]  # checked semantic hits by verdict: "right", "wrong", "unsure"
    near_miss_checks: int


def _learning_where(start: dt.datetime | None, end: dt.datetime | None, tenant: str | None,
                    key: str | None) -> tuple[str, list[object]]:
    """judgements' and cache_checks' rows in the window, of the tenant, of requests the key made."""
    where = ["(%s::timestamptz IS NULL OR ts >= %s::timestamptz)", "(%s::timestamptz IS NULL OR ts < %s::timestamptz)"]
    params: list[object] = [start, start, end, end]
    if tenant is not None:
        where.append("tenant = %s")
        params.append(tenant)
    if key is not None:
        where.append("request_id IN (SELECT request_id FROM request_log WHERE key_id = %s::uuid)")
        params.append(key)
    return " AND ".join(where), params


async def learning_figures(pool: AsyncConnectionPool, start: dt.datetime | None, end: dt.datetime | None,
                           tenant: str | None, key: str | None = None) -> LearningFigures:
    served = await usage(pool, "all", start, end, tenant, key)
    spent = await usage(pool, "all", start, end, tenant, key, learning=True)
    where, params = _where(start, end, tenant, key)
    auto = await _fetch(pool, "SELECT count(*) AS n FROM request_log WHERE requested_model = 'auto' "
                              f"AND http_status < 400 AND {' AND '.join(where)}", params)
    mine, mine_params = _learning_where(start, end, tenant, key)
    judged = await _fetch(pool, "SELECT tier, reference_tier, verdict, score FROM judgements "
                                f"WHERE {mine} ORDER BY ts", mine_params)
    checks = await _fetch(pool, "SELECT kind, verdict, count(*) AS n FROM cache_checks "
                                f"WHERE {mine} GROUP BY 1, 2", mine_params)
    hit_checks = {"right": 0, "wrong": 0, "unsure": 0}
    for c in checks:
        if c["kind"] == "hit":
            hit_checks[c["verdict"]] = int(c["n"])
    return LearningFigures(
        auto_requests=int(auto[0]["n"]), serving_cost_usd=served[0].cost_usd if served else 0.0,
        learning_cost_usd=spent[0].cost_usd if spent else 0.0, learning_calls=spent[0].requests if spent else 0,
        judged=[JudgedRow(r["tier"], r["reference_tier"], r["verdict"], r["score"]) for r in judged],
        hit_checks=hit_checks, near_miss_checks=sum(int(c["n"]) for c in checks if c["kind"] == "near_miss"))


class LogQueries:
    """The queries the usage, requests and dashboard handlers run, over the app's pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def usage(self, view: View, group_by: GroupBy, start: dt.datetime | None, end: dt.datetime | None,
                    tenant: str | None, key: str | None = None) -> list[UsageGroup] | list[ShadowGroup]:
        if view == "shadow":
            return await shadow_usage(self._pool, group_by, start, end, tenant, key)
        return await usage(self._pool, group_by, start, end, tenant, key, learning=view == "learning")

    async def learning(self, start: dt.datetime | None, end: dt.datetime | None, tenant: str | None,
                       key: str | None = None) -> LearningFigures:
        return await learning_figures(self._pool, start, end, tenant, key)

    async def request(self, request_id: str, tenant: str | None) -> LoggedRequest | None:
        return await logged_request(self._pool, request_id, tenant)

    async def recent(self, start: dt.datetime | None, end: dt.datetime | None, tenant: str | None,
                     key: str | None, limit: int) -> list[RecentRequest]:
        return await recent_requests(self._pool, start, end, tenant, key, limit)
