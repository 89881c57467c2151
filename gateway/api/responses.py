"""POST /v1/responses: OpenAI's Responses API (stateless) in front of the request path, JSON and events.

The request is translated into a chat request at this edge (`responses_wire`), served by the same request
path as /v1/chat/completions (routed, cached, limited, priced, logged, explained), and its answer or chat
stream translated back (`responses_stream`)."""

from __future__ import annotations

import time

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.api.answers import JSON, served_headers, unless_disconnected
from gateway.edge.openapi import with_body
from gateway.edge.responses_stream import to_response_events
from gateway.edge.responses_wire import (
    FunctionCallItem,
    OutputItem,
    OutputMessage,
    OutputRefusal,
    OutputText,
    ResponsesRequest,
    parse_responses_request,
    response_shell,
    response_usage,
    status_of,
)
from gateway.gateway import Gateway
from gateway.infra.request_ids import ids
from gateway.path.auth import Principal
from gateway.path.request_path import Answer, PathRequest, StreamAnswer
from gateway.vocab.wire import encoder

ENDPOINT = "/v1/responses"


@post(ENDPOINT, status_code=200, opt={"accounted": ENDPOINT}, operation_class=with_body(ResponsesRequest))
async def create_response(request: Request, gw: Gateway, principal: Principal) -> Response | Stream:
    server = gw.settings.server
    parsed = parse_responses_request(await request.body(), max_messages=server.max_messages,
                                     max_content_parts=server.max_content_parts)
    h = request.headers
    rid, cid = ids(request.scope)
    preq = PathRequest(ENDPOINT, parsed.chat, parsed.chat_raw, h.get("x-smr-force-tier"), h.get("cache-control"),
                       h.get("x-smr-cache"), rid, cid)
    answer = await unless_disconnected(request, gw.path.serve(preq, principal))
    s = answer.served
    shell = response_shell(parsed.request, response_id(s.id), s.created or int(time.time()), s.backend, s.smr)
    if isinstance(answer, StreamAnswer):
        headers = served_headers(s)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        return Stream(to_response_events(answer.chunks, shell), media_type="text/event-stream", headers=headers)
    assert isinstance(answer, Answer) and s.priced is not None
    u = s.priced.usage
    status, details = status_of(answer.finish_reason)
    body = msgspec.structs.replace(shell, output=output_items(answer, shell.id), status=status,
                                   incomplete_details=details,
                                   usage=response_usage(u.prompt_tokens, u.completion_tokens, u.cached_tokens))
    return Response(encoder.encode(body), media_type=JSON, headers=served_headers(s))


def response_id(chat_id: str) -> str:
    """The response's id: the chat answer's, under the Responses prefix (`resp_` + the request id)."""
    return "resp_" + chat_id.removeprefix("chatcmpl-")


def output_items(answer: Answer, rid: str) -> list[OutputItem]:
    """A chat answer's message as Responses output: its text (or refusal), then each function call."""
    m, suffix = answer.message, rid.removeprefix("resp_")
    items: list[OutputItem] = []
    if m.content or m.refusal:
        part = OutputRefusal(m.refusal) if m.refusal and not m.content else OutputText(m.content or "")
        items.append(OutputMessage(f"msg_{suffix}_0", [part]))
    for tc in m.tool_calls or ():
        items.append(FunctionCallItem(f"fc_{tc.id}", tc.id, tc.function.name, tc.function.arguments))
    return items
