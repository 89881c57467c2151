"""POST /v1/chat/completions: the HTTP edge only. Parsing, headers and response shapes live here;
the request path itself is `ChatService`."""

from __future__ import annotations

import secrets
import time

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway.errors import InvalidRequest
from gateway.lifespan import Gateway
from gateway.providers.base import UpstreamCall
from gateway.service import Priced, Route
from gateway.settings import Backend
from gateway.streaming import to_sse
from gateway.wire import ChatCompletion, Choice, encoder, parse_chat_request, usage_out

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
    parsed = parse_chat_request(await request.body())
    req = parsed.request
    if req.n is not None and req.n > 1 and not gw.settings.routing.allow_n_greater_than_one:
        raise InvalidRequest("n > 1 is not supported by this gateway; send n = 1 or leave it out",
                             param="n", code="unsupported_value")
    route = await gw.service.route(req, request.headers.get(FORCE_TIER_HEADER))
    call = UpstreamCall(req, parsed.raw)
    created = int(time.time())
    if req.stream:
        opened = await gw.service.open_stream(call, route)
        headers = route_headers(route, opened.backend, None, "miss")
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        return Stream(to_sse(gw.service, opened, req, new_id(), created), media_type="text/event-stream",
                      headers=headers)
    outcome = await gw.service.complete(call, route)
    c = outcome.completion
    body = ChatCompletion(new_id(), created, outcome.backend.name,
                          [Choice(c.message, 0, c.finish_reason)], usage_out(outcome.priced.usage))
    return Response(encoder.encode(body), media_type=JSON,
                    headers=route_headers(route, outcome.backend, outcome.priced, "miss"))
