"""POST /v1/complete: prompt in, routed answer out, with the cost and savings of the call."""

from __future__ import annotations

import time

from litestar import Request, Response, post
from litestar.datastructures import State

from gateway.api.chat import JSON, route_headers
from gateway.lifespan import Gateway
from gateway.providers.base import UpstreamCall
from gateway.wire import ChatCompletionRequest, CompleteResponse, Message, encoder, parse_complete_request


@post("/v1/complete", status_code=200)
async def complete(request: Request, state: State) -> Response:
    started = time.perf_counter()
    gw: Gateway = state.gateway
    body = parse_complete_request(await request.body())
    messages = [Message("system", body.system)] if body.system else []
    messages.append(Message("user", body.prompt))
    req = ChatCompletionRequest(messages=messages, max_tokens=body.max_tokens, temperature=body.temperature)
    raw: dict[str, object] = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
    if body.max_tokens is not None:
        raw["max_tokens"] = body.max_tokens
    if body.temperature is not None:
        raw["temperature"] = body.temperature
    route = await gw.service.route(req, body.force_tier)
    outcome = await gw.service.complete(UpstreamCall(req, raw), route)
    answer = CompleteResponse(
        response=outcome.completion.message.content or "",
        model_used=gw.model_label(outcome.backend.name),
        difficulty_tag=route.tier or "direct",
        estimated_cost=round(outcome.priced.cost_usd, 10),
        estimated_savings=round(outcome.priced.savings_usd, 10),
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        cache_hit=False,
    )
    return Response(encoder.encode(answer), media_type=JSON,
                    headers=route_headers(route, outcome.backend, outcome.priced, "miss"))
