"""The request path with in-process fakes: no sockets, no database, no Redis.

Each test builds a `RequestPath` from `FakeProvider`s, the in-process cache roles and a list that
collects log rows, and checks what a client gets and what is logged: exactly one row per request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import msgspec
import pytest

from gateway.app import build_pipeline
from gateway.cache.memory import MemoryExactStore
from gateway.cache.service import ResponseCache
from gateway.db.log_row import LogRow
from gateway.fakes.provider import FakeProvider, Reply
from gateway.infra.limiter import MemoryCounters
from gateway.infra.metrics import Metrics
from gateway.path.accounting import Accounting
from gateway.path.admission import Admission
from gateway.path.auth import ANONYMOUS, Principal
from gateway.path.fallback import ChainCaller
from gateway.path.request_path import Answer, PathRequest, RequestPath, StreamAnswer
from gateway.path.routing import Router
from gateway.providers.base import UpstreamCall
from gateway.providers.registry import Providers
from gateway.vocab.errors import AllBackendsFailed, InvalidRequest, PermissionDenied, UpstreamHTTPError
from gateway.vocab.limits import LimitSet
from gateway.vocab.settings import Backend, Capabilities, Settings, parse_settings, validate
from gateway.vocab.wire import parse_chat_request


class Rows(list[LogRow]):
    def record(self, row: LogRow) -> None:
        self.append(row)


class Harness:
    def __init__(self, handlers: dict[str, Callable[[UpstreamCall], Reply]] | None = None,
                 cache: bool = True, tenant_limits: dict[str, LimitSet] | None = None,
                 capabilities: dict[str, Capabilities] | None = None, cascade: list[str] | None = None,
                 shadow: bool = False) -> None:
        caps = capabilities or {}
        backends = [Backend(name=n, provider="openai", model=n, base_url="http://unused", input_price=p,
                            output_price=2 * p, capabilities=caps.get(n, Capabilities()))
                    for n, p in (("cheap", 0.1), ("backup", 0.5), ("strong", 2.0))]
        base = parse_settings({
            "tiers": {"simple": ["cheap", "backup"], "medium": ["backup"], "complex": ["strong", "backup"],
                      "cascade": cascade or []},
            "routing": {"baseline": "strong", "shadow": shadow, "classifiers": ["heuristic"]},
            "auth": {"enabled": False}, "log": {"requests": False},
            "cache": {"semantic": False}})
        self.settings: Settings = validate(msgspec.structs.replace(base, backends=backends))
        handlers = handlers or {}
        self.fakes = {b.name: FakeProvider(b, handlers.get(b.name, lambda call: Reply())) for b in backends}
        self.rows = Rows()
        self.cache = ResponseCache(MemoryExactStore(), None, None, None, self.settings.cache) if cache else None
        self.counters = MemoryCounters()
        self.tenant_limits = tenant_limits or {}
        self.admission = Admission(self.settings.routing, self.settings.limits, self.counters, self)
        self.path = RequestPath(self.settings, Router(self.settings, build_pipeline(self.settings, None)),
                                ChainCaller(Providers(self.fakes)), self.cache, self.admission,
                                Accounting(Metrics(), self.rows))

    async def get(self, tenant: str) -> LimitSet | None:  # the tenant-limits source
        return self.tenant_limits.get(tenant)

    async def serve(self, model: str = "smr/simple", stream: bool = False, principal: Principal = ANONYMOUS,
                    **extra: object) -> Answer | StreamAnswer:
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "What is 2 + 2?"}],
                **extra}
        parsed = parse_chat_request(json.dumps(body).encode())
        return await self.path.serve(PathRequest("/v1/chat/completions", parsed.request, parsed.raw), principal)


async def read_sse(answer: StreamAnswer) -> list[dict[str, object] | str]:
    events: list[dict[str, object] | str] = []
    async for chunk in answer.chunks:
        data = chunk.decode().removeprefix("data: ").strip()
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_json_answer_is_priced_and_logged_once() -> None:
    h = Harness()
    answer = await h.serve()
    assert isinstance(answer, Answer)
    assert answer.message.content == "fake answer"
    s = answer.served
    assert (s.tier, s.backend, s.classifier, s.cache) == ("simple", "cheap", "forced", "miss")
    assert s.priced is not None and s.priced.cost_usd == pytest.approx((10 * 0.1 + 5 * 0.2) / 1e6)
    assert s.priced.savings_usd == pytest.approx((10 * 2.0 + 5 * 4.0) / 1e6 - s.priced.cost_usd)
    assert [(r.http_status, r.backend, r.cache_status) for r in h.rows] == [(200, "cheap", "miss")]


async def test_cache_hit_is_answered_without_a_call() -> None:
    h = Harness()
    await h.serve()
    assert h.cache is not None
    await h.cache.drain()
    hit = await h.serve()
    assert isinstance(hit, Answer) and hit.served.cache == "hit-exact" and hit.served.classifier == "cache"
    assert hit.message.content == "fake answer" and hit.served.priced is not None
    assert hit.served.priced.cost_usd == 0.0 and hit.served.priced.savings_usd > 0
    assert len(h.fakes["cheap"].calls) == 1
    assert [r.cache_status for r in h.rows] == ["miss", "hit-exact"]


async def test_cached_answer_of_a_tier_the_key_may_not_use_is_not_served() -> None:
    h = Harness()
    await h.serve("smr/complex")
    assert h.cache is not None
    await h.cache.drain()
    limited = Principal(tenant="default", key_id="k1", limits=LimitSet(allowed_tiers=["simple"]))
    with pytest.raises(PermissionDenied):
        await h.serve("smr/complex", principal=limited)
    assert [(r.http_status, r.cache_status) for r in h.rows] == [(200, "miss"), (403, "miss")]
    assert len(h.fakes["strong"].calls) == 1


async def test_fallback_to_the_next_backend_is_logged() -> None:
    def refuse(call: UpstreamCall) -> Reply:
        raise UpstreamHTTPError("HTTP 503: overloaded", backend="cheap", upstream_status=503)

    h = Harness({"cheap": refuse})
    answer = await h.serve()
    assert answer.served.backend == "backup"
    (row,) = h.rows
    assert row.http_status == 200 and row.attempts == 2 and "cheap: HTTP 503" in (row.fallback_errors or "")


async def test_every_backend_failing_is_one_error_row() -> None:
    def refuse(call: UpstreamCall) -> Reply:
        raise UpstreamHTTPError("HTTP 500: boom", backend="x", upstream_status=500)

    h = Harness({"cheap": refuse, "backup": refuse})
    with pytest.raises(AllBackendsFailed) as err:
        await h.serve()
    assert err.value.accounted
    (row,) = h.rows
    assert row.http_status == 502 and row.error_type == "all_backends_failed" and row.attempts == 2


async def test_upstream_client_error_is_not_retried() -> None:
    def bad(call: UpstreamCall) -> Reply:
        raise UpstreamHTTPError("HTTP 400: bad field", backend="cheap", upstream_status=400)

    h = Harness({"cheap": bad})
    with pytest.raises(InvalidRequest):
        await h.serve()
    assert h.fakes["backup"].calls == [] and [r.http_status for r in h.rows] == [400]


async def test_stream_is_translated_and_logged_when_it_ends() -> None:
    h = Harness()
    answer = await h.serve(stream=True, stream_options={"include_usage": True})
    assert isinstance(answer, StreamAnswer) and answer.served.priced is None
    assert h.rows == []  # nothing is logged before the stream ends
    events = await read_sse(answer)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index]
    assert text == "fake answer"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 15  # type: ignore[index]
    (row,) = h.rows
    assert row.http_status == 200 and row.stream and row.prompt_tokens == 10 and row.ttft_ms is not None


async def test_stream_error_after_the_first_byte_ends_with_an_error_event() -> None:
    h = Harness({"cheap": lambda call: Reply("one two three four", pieces=4, fail_after=2)})
    answer = await h.serve(stream=True)
    assert isinstance(answer, StreamAnswer)
    events = await read_sse(answer)
    assert "[DONE]" not in events
    last = events[-1]
    assert isinstance(last, dict) and last["error"]["code"] == "upstream_connect_error"  # type: ignore[index]
    assert h.fakes["backup"].calls == []  # too late to fall back: the client has bytes already
    (row,) = h.rows
    assert row.http_status == 502 and row.backend == "cheap"
    assert h.fakes["cheap"].streams_closed == 1


async def test_stream_failing_before_its_first_event_falls_back() -> None:
    h = Harness({"cheap": lambda call: Reply(fail_after=0)})
    answer = await h.serve(stream=True)
    assert isinstance(answer, StreamAnswer) and answer.served.backend == "backup"
    await read_sse(answer)
    (row,) = h.rows
    assert row.http_status == 200 and row.attempts == 2


async def test_cancelled_request_is_logged_once_as_499() -> None:
    h = Harness({"cheap": lambda call: Reply(delay_s=5)})
    task = asyncio.create_task(h.serve())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.http_status, r.error_type) for r in h.rows] == [(499, "client_closed_request")]


async def test_client_leaving_mid_stream_closes_the_upstream_and_logs_499() -> None:
    h = Harness({"cheap": lambda call: Reply("a b c d e f", pieces=6, delay_s=0.01)})
    answer = await h.serve(stream=True)
    assert isinstance(answer, StreamAnswer)
    chunks = aiter(answer.chunks)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    assert [r.http_status for r in h.rows] == [499]
    assert h.fakes["cheap"].streams_closed == 1
    assert h.cache is not None
    await h.cache.drain()
    again = await h.serve(stream=True)  # a cut-off answer is never cached
    assert again.served.cache == "miss"


async def test_admission_refuses_n_above_one_before_any_call() -> None:
    h = Harness()
    with pytest.raises(InvalidRequest) as err:
        await h.serve(n=3)
    assert err.value.param == "n" and all(not f.calls for f in h.fakes.values())
    assert [r.http_status for r in h.rows] == [400]


async def test_forwarded_fields_that_change_the_answer_are_part_of_the_cache_key() -> None:
    """Issue 13, defect 10: a request with other `logprobs` or `reasoning_effort` got the cached answer."""
    h = Harness()
    await h.serve(logprobs=True)
    assert h.cache is not None
    await h.cache.drain()
    assert (await h.serve(logprobs=True)).served.cache == "hit-exact"
    assert (await h.serve(logprobs=False)).served.cache == "miss"
    assert (await h.serve(logprobs=True, reasoning_effort="high")).served.cache == "miss"
    assert (await h.serve(logprobs=True, user="someone-else")).served.cache == "hit-exact"  # `user` changes nothing


async def test_a_failing_backend_is_skipped_by_its_circuit_then_probed_back() -> None:
    state = {"down": True}

    def flaky(call: UpstreamCall) -> Reply:
        if state["down"]:
            raise UpstreamHTTPError("HTTP 503: down", backend="cheap", upstream_status=503)
        return Reply("back again")

    h = Harness({"cheap": flaky}, cache=False)
    breakers = h.path.caller.breakers
    breakers.threshold, breakers.cooldown_s = 3, 0.05
    for _ in range(3):
        assert (await h.serve()).served.backend == "backup"
    assert breakers.state("cheap") == "open" and len(h.fakes["cheap"].calls) == 3
    answer = await h.serve()  # skipped without a call while open
    assert answer.served.backend == "backup" and len(h.fakes["cheap"].calls) == 3
    assert "circuit open" in (h.rows[-1].fallback_errors or "")
    await asyncio.sleep(0.06)
    state["down"] = False
    probe = await h.serve()  # the cool-down is over: one request probes it, and it answers
    assert probe.served.backend == "cheap" and breakers.state("cheap") == "closed"


async def test_a_bad_request_does_not_open_the_circuit() -> None:
    def bad(call: UpstreamCall) -> Reply:
        raise UpstreamHTTPError("HTTP 400: bad", backend="cheap", upstream_status=400)

    h = Harness({"cheap": bad}, cache=False)
    for _ in range(8):
        with pytest.raises(InvalidRequest):
            await h.serve()
    assert h.path.caller.breakers.state("cheap") == "closed"


async def test_every_answer_explains_its_route_in_the_body_the_stream_and_the_log() -> None:
    import msgspec

    h = Harness(cache=False)
    answer = await h.serve("auto")
    smr = answer.served.smr
    assert smr is not None and smr.route == "auto" and smr.classifier == "heuristic"
    assert smr.score is not None and smr.cutoffs == h.settings.routing.cutoffs
    assert smr.margin == pytest.approx(min(abs(smr.score - c) for c in smr.cutoffs), abs=1e-4)
    assert smr.reasons and all("(" in r for r in smr.reasons)  # the features that moved the score
    assert smr.model == answer.served.backend and smr.cost_usd is not None and smr.savings_usd is not None
    logged = msgspec.json.decode(h.rows[-1].explanation or "{}")
    assert logged["request_id"] == smr.request_id == h.rows[-1].request_id and logged["tier"] == smr.tier
    streamed = await h.serve(stream=True, stream_options={"include_usage": True})
    assert isinstance(streamed, StreamAnswer)
    events = [e for e in await read_sse(streamed) if isinstance(e, dict)]
    assert events[0]["smr"]["route"] == "forced" and "cost_usd" not in events[0]["smr"]  # type: ignore[index]
    assert events[-1]["smr"]["cost_usd"] > 0  # type: ignore[index]  # known when the stream ends
    assert all("smr" not in e for e in events[1:-1])


async def test_fallbacks_are_explained() -> None:
    def refuse(call: UpstreamCall) -> Reply:
        raise UpstreamHTTPError("HTTP 503: overloaded", backend="cheap", upstream_status=503)

    h = Harness({"cheap": refuse}, cache=False)
    smr = (await h.serve()).served.smr
    assert smr is not None and smr.model == "backup" and smr.fallbacks == ["cheap: HTTP 503: overloaded"]


async def test_dry_run_decides_and_prices_without_a_call_or_a_row() -> None:
    h = Harness()
    parsed = parse_chat_request(json.dumps({"model": "smr/complex", "max_tokens": 100, "messages": [
        {"role": "user", "content": "What is 2 + 2?"}]}).encode())
    dry = await h.path.dry_run(PathRequest("/v1/route", parsed.request, parsed.raw), ANONYMOUS)
    assert dry.chain == ["strong", "backup"] and dry.smr.tier == "complex" and dry.smr.model == "strong"
    assert dry.estimate.completion_tokens == 100
    assert dry.estimate.cost_usd == pytest.approx((dry.estimate.prompt_tokens * 2.0 + 100 * 4.0) / 1e6)
    assert dry.estimate.savings_usd == pytest.approx(0.0)  # the baseline itself
    assert all(not f.calls for f in h.fakes.values()) and h.rows == []


IMAGE = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                      {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]


async def test_a_backend_without_what_the_request_needs_is_skipped_before_any_call() -> None:
    h = Harness(cache=False, capabilities={"cheap": Capabilities(vision=False)})
    answer = await h.serve(messages=IMAGE)
    assert answer.served.backend == "backup" and h.fakes["cheap"].calls == []
    assert answer.served.smr is not None and answer.served.smr.skipped == ["cheap: no image input"]
    text_only = await h.serve()
    assert text_only.served.backend == "cheap"  # a text request still goes to it


async def test_auto_moves_to_the_nearest_tier_that_can_serve_it_and_a_forced_tier_is_a_400() -> None:
    no_json = Capabilities(json_mode=False)
    h = Harness(cache=False, capabilities={"cheap": no_json, "backup": no_json})
    fmt = {"type": "json_object"}
    answer = await h.serve("auto", response_format=fmt)  # "What is 2 + 2?" scores simple
    smr = answer.served.smr
    assert answer.served.backend == "strong" and smr is not None and smr.tier == "complex"
    assert smr.skipped is not None and smr.skipped[-1] == "tier simple: no backend can serve it"
    with pytest.raises(InvalidRequest) as err:
        await h.serve("smr/simple", response_format=fmt)
    assert err.value.code == "unsupported_request" and "no JSON mode" in err.value.message
    assert all(not f.calls for name, f in h.fakes.items() if name != "strong")


async def test_auto_that_no_tier_can_serve_is_a_400_that_names_every_backend_and_does_not_suggest_auto() -> None:
    small = Capabilities(context_window=50)
    h = Harness(cache=False, capabilities={"cheap": small, "backup": small, "strong": small})
    for model in ("auto", "smr/simple"):
        with pytest.raises(InvalidRequest) as err:
            await h.serve(model, max_tokens=100)
        assert err.value.code == "unsupported_request" and err.value.param == "messages"
        said = err.value.message
        if model == "auto":   # every tier was tried: the message names them all, and 'auto' is no way out
            assert said.startswith("No backend of any tier can serve this request")
            assert all(f"{b}: context window 50" in said for b in ("cheap", "backup", "strong")), said
            assert "'auto'" not in said
        else:
            assert said.startswith("No backend of the simple tier") and "use 'auto' or another model" in said
    assert all(not f.calls for f in h.fakes.values())


async def test_a_prompt_past_the_context_window_skips_the_backend() -> None:
    h = Harness(cache=False, capabilities={"cheap": Capabilities(context_window=50)})
    answer = await h.serve(max_tokens=100)
    assert answer.served.backend == "backup"
    assert answer.served.smr is not None and "context window 50" in (answer.served.smr.skipped or [""])[0]


async def test_yes_do_it_after_a_hard_task_goes_to_the_hard_tier_on_the_request_path() -> None:
    h = Harness(cache=False)
    task = "Design a fault-tolerant distributed database with consensus and explain the trade-offs"
    first = await h.serve("auto", messages=[{"role": "user", "content": task}])
    assert first.served.tier == "complex"
    follow = await h.serve("auto", messages=[{"role": "user", "content": task},
                                             {"role": "assistant", "content": "Here is the design ..."},
                                             {"role": "user", "content": "yes, do it"}])
    assert follow.served.tier == "complex" and follow.served.backend == "strong"
    assert follow.served.smr is not None and follow.served.smr.reasons is not None
    assert follow.served.smr.reasons[0].startswith("follow-up")


async def test_cache_savings_and_routing_savings_are_reported_apart() -> None:
    """A hit saves the routed model's cost (the same model without the cache); routing saved the rest of
    the baseline's. Their sum is what the hit saved against always calling the baseline."""
    h = Harness()
    miss = await h.serve()
    assert h.cache is not None
    await h.cache.drain()
    hit = await h.serve()
    m, c = miss.served.priced, hit.served.priced
    assert m is not None and c is not None
    assert m.cache_savings_usd == 0.0 and m.routing_savings_usd == pytest.approx(m.savings_usd)
    assert c.cost_usd == 0.0 and c.cache_savings_usd == pytest.approx(m.cost_usd)  # what cheap would have cost
    assert c.routing_savings_usd == pytest.approx(m.routing_savings_usd)  # strong's cost minus cheap's
    assert c.savings_usd == pytest.approx(c.routing_savings_usd + c.cache_savings_usd)
    smr = hit.served.smr
    assert smr is not None and smr.cache_savings_usd == pytest.approx(c.cache_savings_usd, abs=1e-9)
    assert [r.cache_savings_usd for r in h.rows] == [0.0, pytest.approx(c.cache_savings_usd)]
