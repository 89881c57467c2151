"""Answering from the cache, and handing fresh answers to it: the HTTP side of caching."""

from __future__ import annotations

from litestar import Request, Response
from litestar.response import Stream

from gateway.accounting import RequestContext
from gateway.cache.base import CachedAnswer
from gateway.cache.keys import route_key
from gateway.cache.service import CachePolicy, Hit, Lookup, cache_policy
from gateway.lifespan import Gateway
from gateway.pricing import baseline_cost_usd
from gateway.service import Priced, Route
from gateway.streaming import replay_sse
from gateway.wire import ChatCompletion, ChatCompletionRequest, Choice, encoder, usage_out

JSON = "application/json"
NO_CACHE = CachePolicy(False, False)


async def check_cache(request: Request, gw: Gateway, ctx: RequestContext, req: ChatCompletionRequest,
                      force_tier: str | None) -> tuple[CachePolicy, Lookup | None]:
    """Decide whether the cache applies and look it up; sets `ctx.cache` to bypass, miss or hit-*."""
    if gw.cache is None:
        ctx.cache = "bypass"
        return NO_CACHE, None
    policy = cache_policy(req, request.headers.get("cache-control"), request.headers.get("x-smr-cache"),
                          gw.settings.cache)
    if not (policy.lookup or policy.store):
        ctx.cache = "bypass"
        return policy, None
    tenant = ctx.principal.tenant if ctx.principal else "default"
    lk = gw.cache.prepare(tenant, req, route_key(req.model, force_tier, gw.settings.routing.default_model))
    if policy.lookup:
        lk = await gw.cache.lookup(lk)
    ctx.cache = lk.hit.kind if lk.hit else ("miss" if policy.lookup else "bypass")
    return policy, lk


def hit_headers(hit: Hit, priced: Priced) -> dict[str, str]:
    a = hit.answer
    headers = {
        "x-smr-tier": a.tier or "direct", "x-smr-model": a.backend, "x-smr-provider": a.provider,
        "x-smr-classifier": "cache", "x-smr-cost-usd": f"{priced.cost_usd:.8f}",
        "x-smr-savings-usd": f"{priced.savings_usd:.8f}", "x-smr-cache": hit.kind,
    }
    if hit.similarity is not None:
        headers["x-smr-cache-similarity"] = f"{hit.similarity:.4f}"
    return headers


def price_hit(gw: Gateway, ctx: RequestContext, hit: Hit) -> Priced:
    """A hit costs nothing upstream and saves the whole baseline cost of the stored answer's tokens."""
    usage = hit.answer.usage
    priced = Priced(usage, 0.0, baseline_cost_usd(usage, gw.service.baseline))
    ctx.priced = priced
    ctx.backend = gw.settings.backend(hit.answer.backend)
    # Logged like the response headers say: the stored answer's tier, decided by the cache.
    ctx.route = Route("cache", hit.answer.tier, (ctx.backend,) if ctx.backend else (), "cache")
    gw.record(ctx, 200)
    return priced


def chat_hit(gw: Gateway, ctx: RequestContext, hit: Hit, req: ChatCompletionRequest, chunk_id: str,
             created: int) -> Response:
    priced = price_hit(gw, ctx, hit)
    headers = hit_headers(hit, priced)
    a = hit.answer
    if req.stream:
        headers["cache-control"] = "no-cache"
        return Stream(replay_sse(a, req, chunk_id, created), media_type="text/event-stream", headers=headers)
    body = ChatCompletion(chunk_id, created, a.backend, [Choice(a.message, 0, a.finish_reason)], usage_out(a.usage))
    return Response(encoder.encode(body), media_type=JSON, headers=headers)


def remember(gw: Gateway, policy: CachePolicy, lk: Lookup | None, answer: CachedAnswer) -> None:
    if gw.cache is not None and lk is not None and policy.store and not answer.message.tool_calls:
        gw.cache.save_later(lk, answer)
