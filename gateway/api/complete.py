"""POST /v1/complete: prompt in, routed answer out, with the cost and savings of the call."""

from __future__ import annotations

import time

from litestar import Request, Response, post
from litestar.datastructures import State

from gateway.api.cached import check_cache, hit_headers, price_hit, remember
from gateway.api.chat import JSON, route_headers
from gateway.api.context import begin, check_route_allowed
from gateway.cache.base import CachedAnswer
from gateway.lifespan import Gateway
from gateway.providers.base import UpstreamCall
from gateway.wire import ChatCompletionRequest, CompleteResponse, Message, encoder, parse_complete_request


@post("/v1/complete", status_code=200)
async def complete(request: Request, state: State) -> Response:
    gw: Gateway = state.gateway
    ctx = await begin(request, gw, "/v1/complete")
    body = parse_complete_request(await request.body())
    if gw.settings.log.prompts:
        ctx.prompt = body.prompt
    messages = [Message("system", body.system)] if body.system else []
    messages.append(Message("user", body.prompt))
    req = ChatCompletionRequest(messages=messages, max_tokens=body.max_tokens, temperature=body.temperature)
    raw: dict[str, object] = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
    if body.max_tokens is not None:
        raw["max_tokens"] = body.max_tokens
    if body.temperature is not None:
        raw["temperature"] = body.temperature
    policy, lk = await check_cache(request, gw, ctx, req, body.force_tier)
    if lk is not None and lk.hit is not None:
        priced = price_hit(gw, ctx, lk.hit)
        a = lk.hit.answer
        hit = CompleteResponse(response=a.message.content or "", model_used=gw.model_label(a.backend),
                               difficulty_tag=a.tier or "direct", estimated_cost=0.0,
                               estimated_savings=round(priced.savings_usd, 10), latency_ms=round(ctx.elapsed_ms(), 2),
                               cache_hit=True)
        return Response(encoder.encode(hit), media_type=JSON, headers=hit_headers(lk.hit, priced))
    route = await gw.service.route(req, body.force_tier)
    ctx.route = route
    check_route_allowed(ctx, route)
    outcome = await gw.service.complete(UpstreamCall(req, raw), route)
    ctx.backend, ctx.attempts, ctx.priced = outcome.backend, outcome.attempts, outcome.priced
    c = outcome.completion
    b = outcome.backend
    remember(gw, policy, lk, CachedAnswer(c.message, c.finish_reason, outcome.priced.usage, b.name, b.provider,
                                          route.tier, lk.prompt if lk else "", int(time.time())))
    answer = CompleteResponse(
        response=outcome.completion.message.content or "",
        model_used=gw.model_label(outcome.backend.name),
        difficulty_tag=route.tier or "direct",
        estimated_cost=round(outcome.priced.cost_usd, 10),
        estimated_savings=round(outcome.priced.savings_usd, 10),
        latency_ms=round(ctx.elapsed_ms(), 2),
        cache_hit=False,
    )
    gw.record(ctx, 200)
    return Response(encoder.encode(answer), media_type=JSON,
                    headers=route_headers(route, outcome.backend, outcome.priced, ctx.cache))
