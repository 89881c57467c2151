"""Rate limits and budgets on the request path, with the in-process counters (the Redis ones run the
same steps as Lua scripts: tests/integration/test_limits.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from gateway.fakes.provider import Reply
from gateway.path.auth import Principal
from gateway.path.request_path import Answer, StreamAnswer
from gateway.vocab.errors import BudgetExceeded, PermissionDenied, RateLimited
from gateway.vocab.limits import LimitSet, RateCheck, RateState, period_id, ratelimit_headers, worst_case_cost
from gateway.vocab.settings import Backend
from router_core.features import estimate_tokens
from tests.unit.test_request_path import Harness


def key(**limits: object) -> Principal:
    return Principal(tenant="acme", key_id="key-1", limits=LimitSet(**limits))  # type: ignore[arg-type]


async def test_requests_per_minute_refuse_the_next_one_with_openai_headers() -> None:
    h = Harness(cache=False)
    for i in range(3):
        ok = await h.serve(principal=key(rate_limit_rpm=3))
        assert ok.served.headers is not None
        assert ok.served.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.served.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    with pytest.raises(RateLimited) as err:
        await h.serve(principal=key(rate_limit_rpm=3))
    e = err.value
    assert e.status == 429 and e.code == "rate_limit_exceeded" and e.type == "requests"
    assert e.headers is not None and int(e.headers["retry-after"]) >= 1
    assert e.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(h.fakes["cheap"].calls) == 3
    assert [r.http_status for r in h.rows] == [200, 200, 200, 429]


async def test_tokens_per_minute_count_the_prompt_then_the_answer() -> None:
    h = Harness(cache=False)
    limited = key(rate_limit_tpm=40)
    first = await h.serve(principal=limited)
    assert first.served.headers and first.served.headers["x-ratelimit-limit-tokens"] == "40"
    await h.admission.drain()  # the answer's 5 completion tokens are added when the request settles
    taken = await h.counters.take([RateCheck("key", "key-1", "tokens", 40, 0)])
    prompt = int(taken.states[0].used) - 5
    assert prompt > 0
    while True:
        try:
            await h.serve(principal=limited)
        except RateLimited as err:
            assert err.type == "tokens"
            break
        await h.admission.drain()
    used = (await h.counters.take([RateCheck("key", "key-1", "tokens", 40, 0)])).states[0].used
    assert used <= 40 + 5  # every prompt was admitted within the limit; the last answer's 5 tokens land after


async def test_the_tighter_of_key_and_tenant_wins() -> None:
    h = Harness(cache=False, tenant_limits={"acme": LimitSet(rate_limit_rpm=2, allowed_tiers=["simple", "medium"])})
    generous = key(rate_limit_rpm=100)
    await h.serve(principal=generous)
    with pytest.raises(PermissionDenied):  # the tenant may not use complex, whatever the key says
        await h.serve("smr/complex", principal=generous)
    with pytest.raises(RateLimited) as err:
        await h.serve(principal=generous)
    assert "tenant" in err.value.message
    other_tenant = Principal(tenant="other", key_id="key-2", limits=LimitSet(rate_limit_rpm=100))
    assert isinstance(await h.serve(principal=other_tenant), Answer)


async def test_budget_race_forty_concurrent_calls_against_a_budget_worth_five() -> None:
    h = Harness({"cheap": lambda call: Reply(delay_s=0.05)}, cache=False)
    # The prompt's estimated tokens and max_tokens 100 on the dearer backend of the simple chain.
    chain = (h.settings.backend("cheap"), h.settings.backend("backup"))
    one = worst_case_cost(estimate_tokens("What is 2 + 2?"), 100, chain)  # type: ignore[arg-type]
    budget = key(budget_usd=5.5 * one)
    results = await asyncio.gather(*(h.serve(principal=budget, max_tokens=100) for _ in range(40)),
                                   return_exceptions=True)
    served = [r for r in results if isinstance(r, Answer)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(served) == 5 and len(refused) == 35, results[:3]
    assert all(e.status == 429 and e.code == "budget_exceeded" for e in refused)
    await h.admission.drain()
    spent, reserved = h.counters._budgets[f"smr:budget:key:key-1:{period_id('total', dt.datetime.now(dt.UTC))}"]
    assert reserved == pytest.approx(0.0, abs=1e-12)
    assert spent == pytest.approx(sum(a.served.priced.cost_usd for a in served if a.served.priced is not None))
    assert spent <= 5.5 * one


async def test_a_failed_call_releases_its_reservation() -> None:
    from gateway.vocab.errors import AllBackendsFailed, UpstreamHTTPError

    def down(call: object) -> Reply:
        raise UpstreamHTTPError("HTTP 503: down", backend="x", upstream_status=503)

    h = Harness({"cheap": down, "backup": down}, cache=False)
    for _ in range(3):
        with pytest.raises(AllBackendsFailed):
            await h.serve(principal=key(budget_usd=1.0), max_tokens=100)
    await h.admission.drain()
    ((spent, reserved),) = h.counters._budgets.values()
    assert spent == 0.0 and reserved == pytest.approx(0.0, abs=1e-12)


def test_headers_and_worst_case_are_plain_functions() -> None:
    a = RateState(RateCheck("key", "k", "requests", 10, 1), 4.0, 1500)
    b = RateState(RateCheck("tenant", "t", "requests", 5, 1), 4.0, 65_000)
    assert ratelimit_headers([a, b]) == {"x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "1",
                                         "x-ratelimit-reset-requests": "1m5s"}
    big = Backend(name="big", provider="openai", model="m", input_price=10, output_price=30, max_output_tokens=1000)
    small = Backend(name="small", provider="openai", model="m", input_price=1, output_price=2)
    assert worst_case_cost(100, None, (small, big)) == pytest.approx((100 * 10 + 1000 * 30) / 1e6)
    assert worst_case_cost(100, 10, (small, big)) == pytest.approx((100 * 10 + 10 * 30) / 1e6)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    assert (period_id("day", now), period_id("month", now), period_id("total", now)) == \
        ("d2026-11-30", "m2026-11", "total")


async def test_no_rolling_minute_holds_more_requests_than_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests per minute are an exact sliding log: a client that keeps asking gets at most the limit in
    any 60 s (a weighted two-window counter let 103 through in 60 s for a 60/min key across a boundary)."""
    from gateway.infra import limiter
    clock = {"t": 1_000_030.0}  # 30 s into a minute
    monkeypatch.setattr(limiter.time, "time", lambda: clock["t"])
    counters = limiter.MemoryCounters()
    check = RateCheck("key", "k", "requests", 60, 1)
    answered: list[float] = []
    while clock["t"] < 1_000_030.0 + 180:  # three minutes of a client asking every 0.25 s
        if (await counters.take([check])).refused is None:
            answered.append(clock["t"])
        clock["t"] += 0.25
    for start in answered:  # every rolling minute that starts at an answer
        assert sum(1 for t in answered if start <= t < start + 60) <= 60
    assert len(answered) == 180  # and the limit is used in full: 60 a minute
    clock["t"] = answered[-1] + 0.25  # the log is full: the next one waits for the oldest to leave it
    taken = await counters.take([check])
    assert taken.refused is not None and taken.retry_ms == round((answered[-60] + 60 - clock["t"]) * 1000)


async def test_auto_shifts_down_as_a_budget_nears_its_end_before_it_refuses() -> None:
    """At 80 % of a budget spent or held, auto routes one tier lower; at 95 %, two; explained."""
    from gateway.vocab.limits import budget_check

    hard = "Design a fault-tolerant distributed database with consensus and explain the trade-offs"
    h = Harness(cache=False)
    p = key(budget_usd=1.0)
    budget = budget_check("key", "key-1", p.limits, dt.datetime.now(dt.UTC))
    assert budget is not None
    tiers = []
    for spent in (0.5, 0.85, 0.97):
        h.counters._budgets.pop(budget.redis_key, None)
        await h.counters.init_spend(budget, spent, 0)
        answer = await h.serve("auto", principal=p, messages=[{"role": "user", "content": hard}], max_tokens=10)
        tiers.append(answer.served.tier)
        if spent > 0.8:
            assert answer.served.smr is not None and answer.served.smr.reasons is not None
            assert answer.served.smr.reasons[0].startswith(f"budget: {spent:.0%}")
    assert tiers == ["complex", "medium", "simple"]
    forced = await h.serve("smr/complex", principal=p, max_tokens=10)  # a forced tier is served as asked
    assert forced.served.tier == "complex"


@pytest.mark.parametrize("ending", ["client left", "upstream broke"])
async def test_a_stream_cut_short_is_charged_for_what_was_generated(ending: str) -> None:
    """Leaving a stream before its end must not make it free: the tokens already relayed (and the prompt)
    are estimated, logged, and settled on the budget and the tokens-per-minute limit."""
    text = " ".join(f"word{i}" for i in range(400))
    reply = Reply(text, pieces=40, delay_s=0.001, usage=None, fail_after=20 if ending == "upstream broke" else None)
    h = Harness({"cheap": lambda call: reply}, cache=False)
    limited = key(budget_usd=1.0, rate_limit_tpm=1_000_000)
    answer = await h.serve(stream=True, principal=limited, max_tokens=2000)
    assert isinstance(answer, StreamAnswer)
    chunks, got = aiter(answer.chunks), []
    for _ in range(21):
        got.append(await anext(chunks))
    await chunks.aclose()  # type: ignore[attr-defined]
    await h.admission.drain()
    (row,) = h.rows
    assert row.http_status == (499 if ending == "client left" else 502)
    relayed = "".join(json.loads(c[6:])["choices"][0]["delta"].get("content") or "" for c in got if b'"choices"' in c)
    assert row.usage_estimated and row.completion_tokens >= estimate_tokens(relayed) > 50
    assert row.prompt_tokens > 0 and row.cost_usd > 0
    ((spent, reserved),) = h.counters._budgets.values()
    assert spent == pytest.approx(row.cost_usd) and reserved == pytest.approx(0.0, abs=1e-12)
    used = (await h.counters.take([RateCheck("key", "key-1", "tokens", 1_000_000, 0)])).states[0].used
    assert used >= row.prompt_tokens + row.completion_tokens


async def test_requests_per_day_refuse_past_the_limit_beside_a_per_minute_one() -> None:
    # A limit kind added as a LimitSet field and a RATE_LIMITS line: the day's counter is apart from the minute's.
    h = Harness(cache=False)
    for _ in range(2):
        await h.serve(principal=key(rate_limit_rpd=2, rate_limit_rpm=100))
    with pytest.raises(RateLimited) as err:
        await h.serve(principal=key(rate_limit_rpd=2, rate_limit_rpm=100))
    e = err.value
    assert e.type == "requests" and e.headers is not None
    assert e.headers["x-ratelimit-limit-requests"] == "2"  # the tighter counter of the kind
    assert int(e.headers["retry-after"]) > 60  # the day's window, not the minute's
    assert len(h.fakes["cheap"].calls) == 2


def test_every_limit_field_has_one_home() -> None:
    from gateway.api.keys import KeyCreate
    from gateway.db.keys import KeyRecord
    from gateway.vocab.limits import LIMIT_FIELDS, RATE_LIMITS

    assert set(LIMIT_FIELDS) <= set(KeyCreate.__struct_fields__)
    assert set(LIMIT_FIELDS) <= set(KeyRecord.__struct_fields__)
    assert {r.field for r in RATE_LIMITS} <= set(LIMIT_FIELDS)
