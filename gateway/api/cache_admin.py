"""DELETE /v1/cache (admin): clear every tenant's cached answers, or one tenant's (`?tenant=`)."""

from __future__ import annotations

from litestar import Request, Response, delete

from gateway.api.deps import admin_only, label_param
from gateway.cache.keys import tenant_tag
from gateway.gateway import Gateway
from gateway.vocab.errors import PermissionDenied
from gateway.vocab.wire import encoder


@delete("/v1/cache", status_code=200, guards=[admin_only])
async def clear_cache(request: Request, gw: Gateway) -> Response:
    if gw.cache is None:
        raise PermissionDenied("the cache is disabled")
    tenant = label_param(request, "tenant")
    removed = await gw.cache.clear(tenant_tag(tenant) if tenant else None)
    return Response(encoder.encode({"cleared": removed, "tenant": tenant}), media_type="application/json")
