"""The request path: every routed request, JSON or SSE, from `/v1/chat/completions` or `/v1/complete`.

`RequestPath.serve(request, principal)` runs the steps in this order, top to bottom in this file:

    1. admit       request-level rules and rate limits for this caller (Admission)
    2. cache       exact, then semantic lookup (ResponseCache); a hit is answered here
    3. route       forced tier, named backend, or the classifier pipeline (Router)
    4. check       may this caller use the chosen tier, and reserve its worst-case cost (Admission)
    5. call        the tier's chain with fallback (ChainCaller); streams: until the first event. A cascade
                   tier's answer is checked whole (cascade.py) and may go once to the tier above
    6. store       remember the answer for the cache, off the request path
    7. account     exactly one record (metrics + request log) for success, error, cancel or client gone,
                   and the admission ticket settled (tokens used, the budget reservation to the real cost)
    8. learn       a sampled `auto` answer (JSON, or a stream once complete) is queued for a second opinion
                   (gateway.learning), never awaited;
                   so is a sampled semantic hit or near miss, for a check of the cached answer

No HTTP types here: the edge hands in a `PathRequest` and turns the `Answer` or `StreamAnswer` into
a response. A stream is accounted for when it ends, by the stream itself (`streaming.to_sse`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import msgspec

from gateway.cache.base import CachedAnswer, Candidate
from gateway.cache.keys import route_key
from gateway.cache.redis_store import RedisExactStore
from gateway.cache.service import CachePolicy, Hit, Lookup, ResponseCache, cache_policy
from gateway.infra.limiter import RedisCounters
from gateway.infra.tracing import NO_TRACING, Tracer
from gateway.learning.worker import Learner
from gateway.path.accounting import Accounting, RequestContext
from gateway.path.admission import Admission
from gateway.path.auth import Principal
from gateway.path.cascade import fails
from gateway.path.explain import explain
from gateway.path.fallback import Answered, ChainCaller, OpenStream
from gateway.path.refusals import RecentRefusals
from gateway.path.routing import Route, Router
from gateway.path.streaming import StreamSummary, completion_events, replay_sse, to_sse
from gateway.providers.base import UpstreamCall
from gateway.vocab.errors import ClientClosedRequest, GatewayError, InternalError, RateLimited
from gateway.vocab.pricing import Priced, fill_usage, price, price_cache_hit, prompt_tokens, with_first_call
from gateway.vocab.prompt_log import logged_prompt
from gateway.vocab.settings import Backend, Settings
from gateway.vocab.wire import CascadeStep, ChatCompletionRequest, Explanation, ResponseMessage, Usage

log = logging.getLogger("gateway")
NO_CACHE = CachePolicy(False, False)
explanation_json = msgspec.json.Encoder().encode


class PathRequest(msgspec.Struct, frozen=True):
    """What the HTTP edge hands the path: the parsed request and the options its headers carry."""

    endpoint: str
    request: ChatCompletionRequest
    # The body as the client sent it: OpenAI-compatible upstreams get every field of it.
    raw: dict[str, object]
    force_tier: str | None = None
    cache_control: str | None = None
    smr_cache: str | None = None
    request_id: str | None = None  # ours (gateway.infra.request_ids), and the client's x-request-id if it sent one
    client_request_id: str | None = None


class Served(msgspec.Struct, frozen=True):
    """How a request was answered: what the response headers and bodies say about it."""

    id: str
    created: int
    tier: str | None
    backend: str
    provider: str
    classifier: str
    cache: str
    priced: Priced | None  # None on a fresh stream: priced when it ends
    similarity: float | None = None
    started: float = 0.0  # perf_counter at the start of the request
    headers: dict[str, str] | None = None  # OpenAI's x-ratelimit-* when a rate limit applies
    smr: Explanation | None = None  # why it was answered this way (the body's `smr` object)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


class Answer(msgspec.Struct, frozen=True):
    served: Served
    message: ResponseMessage
    finish_reason: str | None


class StreamAnswer(msgspec.Struct, frozen=True):
    served: Served
    chunks: AsyncIterator[bytes]  # OpenAI SSE, `data: [DONE]` included


class RouteEstimate(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int  # max_tokens when the request sets it, else ASSUMED_ANSWER_TOKENS
    cost_usd: float
    baseline_cost_usd: float
    savings_usd: float


class DryRun(msgspec.Struct, frozen=True):
    """What POST /v1/route answers: the decision and its estimated cost, without calling any backend."""

    smr: Explanation
    chain: list[str]
    estimate: RouteEstimate
    object: str = "route"


ASSUMED_ANSWER_TOKENS = 256


class RequestPath:
    def __init__(self, settings: Settings, router: Router, caller: ChainCaller, cache: ResponseCache | None,
                 admission: Admission, accounting: Accounting, tracer: Tracer = NO_TRACING) -> None:
        self.settings = settings
        self.router = router
        self.caller = caller
        self.cache = cache
        self.admission = admission
        self.accounting = accounting
        baseline = settings.backend(settings.routing.baseline)
        assert baseline is not None
        self.baseline = baseline
        self.log_prompts = settings.log.prompts
        self.tracer = tracer
        self.learning: Learner | None = None  # sampled second opinions (gateway.learning), set by the Gateway
        self._peek = shared_redis(cache, admission)
        self.refused = RecentRefusals()  # no semantic search started ahead for them (gateway/path/refusals.py)

    async def serve(self, preq: PathRequest, principal: Principal) -> Answer | StreamAnswer:
        req = preq.request
        ctx = RequestContext(preq.endpoint, principal, preq.request_id, preq.client_request_id)
        ctx.requested_model, ctx.stream = req.model, req.stream
        if self.log_prompts:
            ctx.prompt = logged_prompt(req)
        with self.tracer.span("smr.request", endpoint=preq.endpoint, request_id=ctx.request_id,
                              stream=req.stream) as span:
            try:
                answer = await self._serve_accounted(ctx, preq, principal)
            except GatewayError as exc:
                span.set_attribute("http.status_code", exc.status)
                raise
            s = answer.served
            if self.learning is not None and isinstance(answer, Answer):  # 8. learn: queued, never awaited
                r = ctx.route
                self.learning.offer(ctx.request_id, principal.tenant, r.mode if r else None, s.tier, s.classifier,
                                    r.score if r else None, ctx.backend, req, preq.raw, answer.message,
                                    ctx.priced.usage.prompt_tokens if ctx.priced else 0)
            for key, value in (("smr.tier", s.tier), ("smr.model", s.backend), ("smr.cache", s.cache)):
                if value is not None:
                    span.set_attribute(key, value)
            return answer

    async def _serve_accounted(self, ctx: RequestContext, preq: PathRequest,
                               principal: Principal) -> Answer | StreamAnswer:
        """`_serve`, with every way it can end accounted for exactly once."""
        try:
            return await self._serve(ctx, preq, principal)
        except GatewayError as exc:
            self._done(ctx, exc.status, exc)
            exc.accounted = True
            raise
        except asyncio.CancelledError:
            self._done(ctx, ClientClosedRequest.status, ClientClosedRequest("client went away"))
            raise
        except Exception as exc:
            log.exception("unhandled error on the request path (%s)", preq.endpoint)
            err = InternalError("The gateway hit an internal error; it has been logged.")
            self._done(ctx, err.status, err)
            err.accounted = True
            raise err from exc

    async def dry_run(self, preq: PathRequest, principal: Principal) -> DryRun:
        """Route the request as `serve` would (no cache, no rate limits, no call, no log row) and price it on
        the first backend of its chain: prompt tokens estimated, the answer assumed `max_tokens` long."""
        req = preq.request
        ctx = RequestContext(preq.endpoint, principal)
        ticket = await self.admission.ticket_without_rates(principal)
        ctx.cache = "bypass"
        ctx.route = route = await self.router.route(req, preq.force_tier)
        self.admission.check_route(ticket, route.tier)
        backend = route.chain[0]
        p = prompt_tokens(req, preq.raw)
        c = req.output_limit or ASSUMED_ANSWER_TOKENS
        ctx.backend = backend
        ctx.priced = priced = price(Usage(p, c, p + c, estimated=True), backend, self.baseline)
        estimate = RouteEstimate(p, c, round(priced.cost_usd, 10), round(priced.baseline_cost_usd, 10),
                                 round(priced.savings_usd, 10))
        return DryRun(explain(ctx, self.router.cutoffs), [b.name for b in route.chain], estimate)

    def _done(self, ctx: RequestContext, status: int, error: GatewayError | None = None,
              similarity: float | None = None) -> Explanation:
        """7. account: the one record of this request (with its explanation), and its admission ticket settled."""
        if ctx.first_priced is not None:  # a cascade: both calls are paid for
            ctx.priced = with_first_call(ctx.priced, ctx.first_priced)
        if ctx.shadow is not None and ctx.priced is not None:
            ctx.shadow_priced = price(ctx.priced.usage, ctx.shadow.chain[0], self.baseline)
        smr = explain(ctx, self.router.cutoffs, similarity)
        if self.accounting.log is not None:  # the row keeps it as JSON; without a log nothing reads it
            ctx.explanation = explanation_json(smr).decode()
        self.accounting.record(ctx, status, error)
        self.admission.settle(ctx.ticket, ctx.priced, from_cache=ctx.route is not None and ctx.route.mode == "cache")
        return smr

    async def _serve(self, ctx: RequestContext, preq: PathRequest, principal: Principal) -> Answer | StreamAnswer:
        req = preq.request
        # 1. admit (the exact GET and the semantic search in its write when they share one Redis; read once admitted)
        policy, lk = self._prepare(preq, principal)
        peek = lk.key if self._peek and lk is not None and policy.lookup else None
        ahead = (self.cache.search_ahead(lk) if self._peek and self.cache and lk and policy.lookup
                 and not self.refused.lately(principal) else None)
        try:
            ticket = ctx.ticket = await self.admission.admit(principal, req, preq.raw, peek)
        except RateLimited as exc:
            self.refused.note(principal, exc)
            raise
        # 2. cache
        with self.tracer.span("smr.cache.lookup") as span:
            lk = await self._lookup(ctx, policy, lk, ticket.peeked, ahead)
            span.set_attribute("smr.cache", ctx.cache)
        if lk is not None and lk.hit is not None:
            answer = self._from_cache(ctx, req, lk.hit)
            self._check_cache(ctx, req, preq.raw, lk, None)
            return answer
        # 3. route (auto shifts down as a budget nears its end)
        used = 0.0
        if preq.force_tier is None and (req.model or self.router.default_model) == "auto":
            used = await self.admission.budget_used(ticket)
        with self.tracer.span("smr.classify", model=req.model or self.router.default_model) as span:
            route = await self.router.route(req, preq.force_tier, lk.vector if lk else None,
                                            lk.prompt if lk else None, budget_used=used, as_asked=self.router.shadow)
            span.set_attribute("smr.route", route.mode)
            span.set_attribute("smr.classifier", route.classifier)
            if route.tier is not None:
                span.set_attribute("smr.tier", route.tier)
            if route.score is not None:
                span.set_attribute("smr.score", route.score)
        ctx.route = route
        if self.router.shadow:  # shadow mode: served as asked; what routing would have done is logged
            ctx.shadow = await self.router.would_route(req, lk.vector if lk else None, lk.prompt if lk else None)
        # 4. check (a cascade tier may call the tier above too: both are held on the budgets)
        self.admission.check_route(ticket, route.tier)
        up = self.router.escalation(route, req)
        if up is not None and not self.admission.tier_allowed(ticket, up.tier):
            up = None
        await self.admission.reserve(ticket, route.chain, req, up.chain if up is not None else ())
        # 5. call
        call = UpstreamCall(req, preq.raw)
        if up is not None:  # cascade: the cheap answer, whole, is checked before any byte goes out
            answered = await self.caller.complete(call, route.chain)
            c = answered.completion
            reason = fails(req, c.message, c.finish_reason, answered.backend)
            if reason is None:
                return self._answered(ctx, req, route, answered, policy, lk)
            first = price(fill_usage(c.usage, req, c.message.content or "", answered.backend), answered.backend,
                          self.baseline)
            ctx.first_priced, ctx.attempts = first, answered.attempts
            ctx.cascade = CascadeStep(route.tier or "", answered.backend.name, reason, round(first.cost_usd, 10))
            ctx.route = route = msgspec.structs.replace(
                up, reasons=(f"cascade: {route.tier} answer failed ({reason}) -> {up.tier}", *up.reasons))
        if req.stream:
            opened = await self.caller.open_stream(call, route.chain)
            return self._relay(ctx, call, route, opened, policy, lk)
        return self._answered(ctx, req, route, await self.caller.complete(call, route.chain), policy, lk)

    def _answered(self, ctx: RequestContext, req: ChatCompletionRequest, route: Route, answered: Answered,
                  policy: CachePolicy, lk: Lookup | None) -> Answer | StreamAnswer:
        """A whole answer: JSON, or (a cascade's cheap answer that passed) replayed as a stream."""
        if req.stream:
            first, events = completion_events(answered.completion)
            opened = OpenStream(answered.backend, first, events, answered.attempts, float("inf"))
            return self._relay(ctx, UpstreamCall(req, {}), route, opened, policy, lk)
        c, backend = answered.completion, answered.backend
        priced = price(fill_usage(c.usage, req, c.message.content or "", backend), backend, self.baseline)
        ctx.backend, ctx.priced = backend, priced
        ctx.attempts = [*ctx.attempts, *answered.attempts]
        # 7. account, then 6. store: the settlement starts first (it reaches Redis a turn later, through its timeout
        # task), so that it and the store are written in the same turn: one round trip on a shared `RespClient`
        smr = self._done(ctx, 200)
        self._remember(policy, lk, CachedAnswer(c.message, c.finish_reason, priced.usage, backend.name,
                                                backend.provider, route.tier, lk.prompt if lk else "",
                                                int(time.time())))
        self._check_cache(ctx, req, {}, lk, answered)
        return Answer(self._served(ctx, route, backend, ctx.priced, smr), c.message, c.finish_reason)

    def _check_cache(self, ctx: RequestContext, req: ChatCompletionRequest, raw: dict[str, object],
                     lk: Lookup | None, fresh: Answered | None) -> None:
        """8. learn: a semantic hit, or a near miss with the answer the client got, queued for a check."""
        if self.learning is None or lk is None or lk.threshold is None:
            return
        tenant = ctx.principal.tenant if ctx.principal else None
        if lk.hit is not None and lk.hit.kind == "hit-semantic":
            self.learning.offer_cache(ctx.request_id, tenant, "hit", lk.hit, lk.threshold, req, raw)
        elif lk.near is not None and fresh is not None:
            self.learning.offer_cache(ctx.request_id, tenant, "near_miss", lk.near, lk.threshold, req, raw,
                                      fresh.completion.message, fresh.backend.name)

    # ------------------------------------------------------------------ steps
    def _prepare(self, preq: PathRequest, principal: Principal) -> tuple[CachePolicy, Lookup | None]:
        """Whether the cache applies, and the lookup's keys (no I/O); None: the cache is bypassed."""
        cache, req = self.cache, preq.request
        if cache is None:
            return NO_CACHE, None
        policy = cache_policy(req, preq.cache_control, preq.smr_cache, cache.cfg)
        if not (policy.lookup or policy.store):
            return policy, None
        return policy, cache.prepare(principal.tenant, req,
                                     route_key(req.model, preq.force_tier, self.router.default_model), preq.raw)

    async def _lookup(self, ctx: RequestContext, policy: CachePolicy, lk: Lookup | None,
                      peeked: tuple[bytes | None, ...], ahead: asyncio.Task[list[Candidate]] | None) -> Lookup | None:
        """The lookup (`peeked`: the exact entry, already read; `ahead`: the semantic search, already started);
        sets `ctx.cache` to bypass, miss or hit-*. A stored answer from a tier this key may not use is not
        served (it counts as a miss)."""
        if self.cache is None or lk is None:
            ctx.cache = "bypass"
            return lk
        if policy.lookup:
            lk = await self.cache.lookup(lk, peeked, ahead)
            if lk.hit is not None and ctx.ticket and not self.admission.tier_allowed(ctx.ticket, lk.hit.answer.tier):
                lk.hit = None
        ctx.cache = lk.hit.kind if lk.hit else ("miss" if policy.lookup else "bypass")
        return lk

    def _from_cache(self, ctx: RequestContext, req: ChatCompletionRequest, hit: Hit) -> Answer | StreamAnswer:
        a = hit.answer
        backend = self.settings.backend(a.backend)
        priced = price_cache_hit(a.usage, backend, self.baseline)
        # Logged as the response headers say: the stored answer's tier, decided by the cache.
        ctx.priced, ctx.backend = priced, backend
        ctx.route = Route("cache", a.tier, (backend,) if backend else (), "cache")
        smr = self._done(ctx, 200, similarity=hit.similarity)
        served = Served(response_id(ctx), int(time.time()), a.tier, a.backend, a.provider, "cache", hit.kind, priced,
                        hit.similarity, ctx.started, ctx.ticket.headers if ctx.ticket else None, smr)
        if req.stream:
            return StreamAnswer(served, replay_sse(a, req, served.id, served.created, smr))
        return Answer(served, a.message, a.finish_reason)

    def _relay(self, ctx: RequestContext, call: UpstreamCall, route: Route, opened: OpenStream,
               policy: CachePolicy, lk: Lookup | None) -> StreamAnswer:
        backend = opened.backend
        ctx.backend, ctx.ttft_ms = backend, ctx.elapsed_ms()
        ctx.attempts = [*ctx.attempts, *opened.attempts]
        served = self._served(ctx, route, backend, None, explain(ctx, self.router.cutoffs))

        def on_done(summary: StreamSummary) -> None:
            ctx.priced = summary.priced
            if summary.error is not None:
                self._done(ctx, summary.error.status, summary.error)
            elif summary.cancelled:
                self._done(ctx, ClientClosedRequest.status, ClientClosedRequest("client went away"))
            else:
                self._done(ctx, 200)
                if summary.priced is not None and summary.finish_reason == "stop":
                    self._remember(policy, lk, CachedAnswer(
                        ResponseMessage(content=summary.text), "stop", summary.priced.usage, backend.name,
                        backend.provider, route.tier, lk.prompt if lk else "", served.created))
                if self.learning is not None and summary.text and not call.request.tools:  # 8. learn (streamed)
                    tenant = ctx.principal.tenant if ctx.principal else None
                    self.learning.offer(ctx.request_id, tenant, route.mode, route.tier, route.classifier, route.score,
                                        backend, call.request, call.raw, ResponseMessage(content=summary.text),
                                        summary.priced.usage.prompt_tokens if summary.priced else 0)

        return StreamAnswer(served, to_sse(opened, call.request, served.id, served.created, self.baseline, on_done,
                                           served.smr, ctx.first_priced))

    def _remember(self, policy: CachePolicy, lk: Lookup | None, answer: CachedAnswer) -> None:
        if self.cache is not None and lk is not None and policy.store and not answer.message.tool_calls:
            self.cache.save_later(lk, answer)

    @staticmethod
    def _served(ctx: RequestContext, route: Route, backend: Backend, priced: Priced | None,
                smr: Explanation) -> Served:
        return Served(response_id(ctx), int(time.time()), route.tier, backend.name, backend.provider, route.classifier,
                      ctx.cache, priced, None, ctx.started, ctx.ticket.headers if ctx.ticket else None, smr)


def shared_redis(cache: ResponseCache | None, admission: Admission) -> bool:
    """Whether the exact cache and the limit counters use one Redis client: then admission reads the cache's
    entry with its script, in one round trip."""
    counters = admission.counters
    return (cache is not None and isinstance(cache.exact, RedisExactStore) and isinstance(counters, RedisCounters)
            and cache.exact.client is counters.client)


def response_id(ctx: RequestContext) -> str:
    """The OpenAI-style id of the answer: the request's own id under OpenAI's prefix."""
    return "chatcmpl-" + ctx.request_id.removeprefix("req_")
