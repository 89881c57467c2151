"""DELETE /v1/cache (admin): clear every tenant's cached answers, or one tenant's (`?tenant=`)."""

from __future__ import annotations

from litestar import Request, Response, delete
from litestar.datastructures import State

from gateway.cache.keys import tenant_tag
from gateway.errors import PermissionDenied
from gateway.lifespan import Gateway
from gateway.wire import encoder


@delete("/v1/cache", status_code=200)
async def clear_cache(request: Request, state: State) -> Response:
    gw: Gateway = state.gateway
    gw.auth.require_admin(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if gw.cache is None:
        raise PermissionDenied("the cache is disabled")
    tenant = request.query_params.get("tenant")
    removed = await gw.cache.store.clear(tenant_tag(tenant) if tenant else None)
    return Response(encoder.encode({"cleared": removed, "tenant": tenant}), media_type="application/json")
