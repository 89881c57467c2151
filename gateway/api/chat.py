"""POST /v1/chat/completions: OpenAI's chat API in front of the request path (JSON and SSE)."""

from __future__ import annotations

from litestar import Request, post
from litestar.types import ASGIApp

from gateway.api.answers import JSONAnswer, served_headers, sse_response, unless_disconnected
from gateway.api.deps import caller
from gateway.edge.openapi import with_body
from gateway.infra.request_ids import ids
from gateway.path.request_path import PathRequest, StreamAnswer
from gateway.vocab.wire import ChatCompletion, ChatCompletionRequest, Choice, encoder, parse_chat_request, usage_out

ENDPOINT = "/v1/chat/completions"


@post(ENDPOINT, status_code=200, opt={"accounted": ENDPOINT}, operation_class=with_body(ChatCompletionRequest))
async def chat_completions(request: Request) -> ASGIApp:
    gw, principal = await caller(request)
    parsed = parse_chat_request(await request.body(), max_messages=gw.settings.server.max_messages,
                                max_content_parts=gw.settings.server.max_content_parts)
    h = request.headers
    rid, cid = ids(request.scope)
    preq = PathRequest(ENDPOINT, parsed.request, parsed.raw, h.get("x-smr-force-tier"), h.get("cache-control"),
                       h.get("x-smr-cache"), rid, cid)
    answer = await unless_disconnected(request, gw.path.serve(preq, principal))
    if isinstance(answer, StreamAnswer):
        return sse_response(answer, request)
    s = answer.served
    assert s.priced is not None
    body = ChatCompletion(s.id, s.created, s.backend, [Choice(answer.message, 0, answer.finish_reason)],
                          usage_out(s.priced.usage), smr=s.smr)
    return JSONAnswer(encoder.encode(body), served_headers(s))
