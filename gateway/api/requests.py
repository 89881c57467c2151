"""GET /v1/requests/{id}: a logged request and why it was routed as it was (its `smr` object).
GET /v1/requests?from=&to=&key=&limit=: the most recent requests, newest first (the dashboard's table).
A client key sees only its own tenant's requests; the admin key sees any (and may add `tenant=`). The row
is written a moment after the response (log.flush_interval_s), so a request asked for at once may not be
there yet."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from gateway.api.deps import key_param, label_param
from gateway.db.usage import RecentRequest, parse_time
from gateway.gateway import Gateway
from gateway.infra.request_ids import MAX_ID_CHARS
from gateway.path.auth import Principal
from gateway.vocab.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.vocab.wire import encoder


@get("/v1/requests/{request_id:path}")
async def get_request(gw: Gateway, principal: Principal, request_id: str) -> Response:
    """A `path` parameter: a client's id may hold a `/` (sent as %2F, which the server decodes first)."""
    if gw.log_queries is None:
        raise PermissionDenied("request lookups need the database, which is disabled")
    request_id = request_id.removeprefix("/")
    if len(request_id) > MAX_ID_CHARS or not (request_id.isascii() and request_id.isprintable()):
        raise NotFound(f"No request with id {request_id[:MAX_ID_CHARS]!r}", param="id")
    found = await gw.log_queries.request(request_id, None if principal.admin else principal.tenant)
    if found is None:
        raise NotFound(f"No request with id {request_id!r} for this key's tenant (yet)", param="id")
    return Response(encoder.encode(found), media_type="application/json")


class RequestList(msgspec.Struct, frozen=True):
    data: list[RecentRequest]
    object: str = "list"


@get("/v1/requests")
async def list_requests(request: Request, gw: Gateway, principal: Principal) -> Response:
    if gw.log_queries is None:
        raise PermissionDenied("request lookups need the database, which is disabled")
    q = request.query_params
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 500:
        raise InvalidRequest("'limit' must be a whole number from 1 to 500", param="limit", code="invalid_value")
    start, end = parse_time(q.get("from"), "from"), parse_time(q.get("to"), "to")
    tenant = label_param(request, "tenant") if principal.admin else principal.tenant
    rows = await gw.log_queries.recent(start, end, tenant, key_param(request), limit)
    return Response(encoder.encode(RequestList(rows)), media_type="application/json")
