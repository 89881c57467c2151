"""GET /v1/requests/{id}: a logged request and why it was routed as it was (its `smr` object).
A client key sees only its own tenant's requests; the admin key sees any. The row is written a moment
after the response (log.flush_interval_s), so a request asked for at once may not be there yet."""

from __future__ import annotations

from litestar import Response, get

from gateway.auth import Principal
from gateway.db.usage import logged_request
from gateway.errors import NotFound, PermissionDenied
from gateway.gateway import Gateway
from gateway.wire import encoder


@get("/v1/requests/{request_id:str}")
async def get_request(gw: Gateway, principal: Principal, request_id: str) -> Response:
    if gw.pool is None:
        raise PermissionDenied("request lookups need the database, which is disabled")
    if len(request_id) > 64 or not (request_id.isascii() and request_id.isprintable()):
        raise NotFound(f"No request with id {request_id[:64]!r}", param="id")
    found = await logged_request(gw.pool, request_id, None if principal.admin else principal.tenant)
    if found is None:
        raise NotFound(f"No request with id {request_id!r} for this key's tenant (yet)", param="id")
    return Response(encoder.encode(found), media_type="application/json")
