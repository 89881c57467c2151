"""POST /v1/complete: a prompt in, the routed answer out with its tier, cost and savings."""

from __future__ import annotations

import msgspec
from litestar import Request, post
from litestar.types import ASGIApp

from gateway.api.answers import JSONAnswer, served_headers, unless_disconnected
from gateway.api.deps import caller
from gateway.edge.openapi import with_body
from gateway.infra.request_ids import ids
from gateway.path.request_path import Answer, PathRequest
from gateway.vocab.wire import (
    ChatCompletionRequest,
    CompleteRequest,
    CompleteResponse,
    Message,
    encoder,
    parse_complete_request,
)

ENDPOINT = "/v1/complete"


@post(ENDPOINT, status_code=200, opt={"accounted": ENDPOINT}, operation_class=with_body(CompleteRequest))
async def complete(request: Request) -> ASGIApp:
    gw, principal = await caller(request)
    body = parse_complete_request(await request.body())
    messages = [Message("system", body.system)] if body.system else []
    messages.append(Message("user", body.prompt))
    req = ChatCompletionRequest(messages=messages, max_tokens=body.max_tokens, temperature=body.temperature)
    h = request.headers
    rid, cid = ids(request.scope)
    preq = PathRequest(ENDPOINT, req, msgspec.to_builtins(req), body.force_tier, h.get("cache-control"),
                       h.get("x-smr-cache"), rid, cid)
    answer = await unless_disconnected(request, gw.path.serve(preq, principal))
    assert isinstance(answer, Answer) and answer.served.priced is not None
    s, priced = answer.served, answer.served.priced
    out = CompleteResponse(response=answer.message.content or "", model_used=gw.model_label(s.backend),
                           difficulty_tag=s.tier or "direct", estimated_cost=round(priced.cost_usd, 10),
                           estimated_savings=round(priced.savings_usd, 10), latency_ms=round(s.elapsed_ms(), 2),
                           cache_hit=s.cache.startswith("hit"), smr=s.smr)
    return JSONAnswer(encoder.encode(out), served_headers(s))
