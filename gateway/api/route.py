"""POST /v1/route: the routing decision and estimated cost of a chat request, with no backend called.

The body is a chat completion request (the same as /v1/chat/completions); nothing is cached, logged or
counted against rate limits or budgets. What routing would save is `estimate.savings_usd`."""

from __future__ import annotations

from litestar import Request, Response, post

from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.path.auth import Principal
from gateway.path.request_path import PathRequest
from gateway.vocab.wire import ChatCompletionRequest, encoder, parse_chat_request

ENDPOINT = "/v1/route"


@post(ENDPOINT, status_code=200, operation_class=with_body(ChatCompletionRequest))
async def dry_run(request: Request, gw: Gateway, principal: Principal) -> Response:
    parsed = parse_chat_request(await request.body(), max_messages=gw.settings.server.max_messages,
                                max_content_parts=gw.settings.server.max_content_parts)
    preq = PathRequest(ENDPOINT, parsed.request, parsed.raw, request.headers.get("x-smr-force-tier"))
    return Response(encoder.encode(await gw.path.dry_run(preq, principal)), media_type="application/json")
