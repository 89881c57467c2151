"""POST /v1/chat/completions: OpenAI's chat API in front of the request path (JSON and SSE)."""

from __future__ import annotations

from litestar import Request, Response, post

from gateway.api.answers import JSON, served_headers, sse_response, unless_disconnected
from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.infra.request_ids import ids
from gateway.path.auth import Principal
from gateway.path.request_path import PathRequest, StreamAnswer
from gateway.vocab.wire import ChatCompletion, ChatCompletionRequest, Choice, encoder, parse_chat_request, usage_out

ENDPOINT = "/v1/chat/completions"


@post(ENDPOINT, status_code=200, opt={"accounted": ENDPOINT}, operation_class=with_body(ChatCompletionRequest))
async def chat_completions(request: Request, gw: Gateway, principal: Principal) -> Response:
    parsed = parse_chat_request(await request.body(), max_messages=gw.settings.server.max_messages,
                                max_content_parts=gw.settings.server.max_content_parts)
    h = request.headers
    rid, cid = ids(request.scope)
    preq = PathRequest(ENDPOINT, parsed.request, parsed.raw, h.get("x-smr-force-tier"), h.get("cache-control"),
                       h.get("x-smr-cache"), rid, cid)
    answer = await unless_disconnected(request, gw.path.serve(preq, principal))
    if isinstance(answer, StreamAnswer):
        return sse_response(answer)
    s = answer.served
    assert s.priced is not None
    body = ChatCompletion(s.id, s.created, s.backend, [Choice(answer.message, 0, answer.finish_reason)],
                          usage_out(s.priced.usage), smr=s.smr)
    return Response(encoder.encode(body), media_type=JSON, headers=served_headers(s))
