"""POST /v1/feedback: rate an answer (1 good, -1 bad, 0 neutral), with an optional comment.

A client key rates its own tenant's requests; the latest rating of a request wins. The log row is written
a moment after the response, so a rating sent at once waits for it briefly. With prompt logging on,
`smr train --from-logs` learns from the ratings."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Request, Response, post
from msgspec import Meta

from gateway.api.deps import decode_body
from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.path.auth import Principal
from gateway.vocab.errors import NotFound, PermissionDenied
from gateway.vocab.wire import encoder

WAIT_FOR_ROW_S = (0.1, 0.25, 0.5, 1.0)


class FeedbackRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    request_id: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
    rating: Annotated[int, Meta(ge=-1, le=1)]
    comment: Annotated[str, Meta(max_length=4000)] | None = None


@post("/v1/feedback", status_code=200, operation_class=with_body(FeedbackRequest))
async def post_feedback(request: Request, gw: Gateway, principal: Principal) -> Response:
    store = gw.feedback
    if store is None:
        raise PermissionDenied("feedback needs the request log (log.requests), which is off")
    body = decode_body(await request.body(), FeedbackRequest)
    tenant = None if principal.admin else principal.tenant
    comment = body.comment.replace("\x00", "") if body.comment else body.comment
    for pause in (*WAIT_FOR_ROW_S, None):
        rated = await store.rate(body.request_id, tenant, principal.key_id, body.rating, comment)
        if rated is not None:
            return Response(encoder.encode(rated), media_type="application/json")
        if pause is not None:
            await asyncio.sleep(pause)
    raise NotFound(f"No request with id {body.request_id!r} for this key's tenant", param="request_id")
