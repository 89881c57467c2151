"""POST /v1/chat/completions: the HTTP edge only. Parsing, headers and response shapes live here;
the request path itself is `ChatService`."""

from __future__ import annotations

import secrets
import time

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway.api.cached import chat_hit, check_cache, remember
from gateway.api.context import begin, check_route_allowed
from gateway.cache.base import CachedAnswer
from gateway.errors import InvalidRequest
from gateway.lifespan import Gateway
from gateway.providers.base import UpstreamCall
from gateway.service import Priced, Route
from gateway.settings import Backend
from gateway.streaming import StreamSummary, to_sse
from gateway.wire import (
    ChatCompletion,
    Choice,
    ResponseMessage,
    encoder,
    message_text,
    parse_chat_request,
    usage_out,
)

JSON = "application/json"
FORCE_TIER_HEADER = "x-smr-force-tier"


def route_headers(route: Route, backend: Backend, priced: Priced | None, cache: str) -> dict[str, str]:
    return {
        "x-smr-tier": route.tier or "direct",
        "x-smr-model": backend.name,
        "x-smr-provider": backend.provider,
        "x-smr-classifier": route.classifier,
        "x-smr-cost-usd": f"{priced.cost_usd:.8f}" if priced else "deferred",
        "x-smr-savings-usd": f"{priced.savings_usd:.8f}" if priced else "deferred",
        "x-smr-cache": cache,
    }


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, state: State) -> Response:
    gw: Gateway = state.gateway
    ctx = await begin(request, gw, "/v1/chat/completions")
    parsed = parse_chat_request(await request.body())
    req = parsed.request
    ctx.requested_model = req.model
    ctx.stream = req.stream
    if gw.settings.log.prompts:
        ctx.prompt = "\n".join(f"{m.role}: {message_text(m)}" for m in req.messages)
    if req.n is not None and req.n > 1 and not gw.settings.routing.allow_n_greater_than_one:
        raise InvalidRequest("n > 1 is not supported by this gateway; send n = 1 or leave it out",
                             param="n", code="unsupported_value")
    force_tier = request.headers.get(FORCE_TIER_HEADER)
    created = int(time.time())
    policy, lk = await check_cache(request, gw, ctx, req, force_tier)
    if lk is not None and lk.hit is not None:
        return chat_hit(gw, ctx, lk.hit, req, new_id(), created)
    route = await gw.service.route(req, force_tier, *((lk.vector, lk.prompt) if lk else ()))
    ctx.route = route
    check_route_allowed(ctx, route)
    call = UpstreamCall(req, parsed.raw)
    if req.stream:
        opened = await gw.service.open_stream(call, route)
        ctx.backend, ctx.attempts, ctx.ttft_ms = opened.backend, opened.attempts, ctx.elapsed_ms()

        def on_done(summary: StreamSummary) -> None:
            ctx.priced = summary.priced
            if summary.error is not None:
                gw.record(ctx, summary.error.status, summary.error)
                return
            gw.record(ctx, 499 if summary.cancelled else 200)  # 499: the client went away
            if not summary.cancelled and summary.priced is not None and summary.finish_reason == "stop":
                remember(gw, policy, lk, CachedAnswer(
                    ResponseMessage(content=summary.text), "stop", summary.priced.usage, opened.backend.name,
                    opened.backend.provider, route.tier, lk.prompt if lk else "", created))

        headers = route_headers(route, opened.backend, None, ctx.cache)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        return Stream(to_sse(gw.service, opened, req, new_id(), created, on_done), media_type="text/event-stream",
                      headers=headers)
    outcome = await gw.service.complete(call, route)
    ctx.backend, ctx.attempts, ctx.priced = outcome.backend, outcome.attempts, outcome.priced
    gw.record(ctx, 200)
    c = outcome.completion
    remember(gw, policy, lk, CachedAnswer(c.message, c.finish_reason, outcome.priced.usage, outcome.backend.name,
                                          outcome.backend.provider, route.tier, lk.prompt if lk else "", created))
    body = ChatCompletion(new_id(), created, outcome.backend.name,
                          [Choice(c.message, 0, c.finish_reason)], usage_out(outcome.priced.usage))
    return Response(encoder.encode(body), media_type=JSON,
                    headers=route_headers(route, outcome.backend, outcome.priced, ctx.cache))
