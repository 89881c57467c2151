"""PUT / GET /v1/tenants/{tenant}/limits (admin): a tenant's rate limits, budget and allowed tiers.

They apply to every key of the tenant together, beside each key's own limits; the tighter one wins.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get, put

from gateway.api.deps import admin_only
from gateway.db.limits import TenantLimitsStore
from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.vocab.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.vocab.limits import NO_LIMITS, LimitSet
from gateway.vocab.wire import decode_json_object, encoder, validation_error


class TenantLimits(msgspec.Struct, frozen=True):
    tenant: str
    limits: LimitSet
    object: str = "tenant.limits"


def _store(gw: Gateway, tenant: str) -> TenantLimitsStore:
    if gw.tenants is None:
        raise PermissionDenied("tenant limits need the database, which is disabled")
    if not tenant or len(tenant) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in tenant):
        raise InvalidRequest("the tenant must be printable text of at most 200 characters", param="tenant",
                             code="invalid_value")
    return gw.tenants


def _tenant(param: str) -> str:
    """The tenant in the path. A tenant named `a/b` comes as `a%2Fb`, which the server decodes before routing:
    the second route takes the rest of the path (`/a/b/limits`, and Litestar picks it for every path)."""
    if not param.startswith("/"):
        return param
    if not param.endswith("/limits"):
        raise NotFound(f"No route for /v1/tenants{param}")
    return param[1:-len("/limits")]


ROUTES = ["/v1/tenants/{tenant:str}/limits", "/v1/tenants/{tenant:path}"]


@put(ROUTES, status_code=200, guards=[admin_only], operation_class=with_body(LimitSet))
async def put_tenant_limits(request: Request, gw: Gateway, tenant: str) -> Response:
    """Replace the tenant's limits (a field left out or null: no limit of that kind)."""
    tenant = _tenant(tenant)
    store = _store(gw, tenant)
    raw = decode_json_object(await request.body())
    if raw.get("allowed_tiers") == []:  # not "every tier", which is null or leaving it out
        raise InvalidRequest("'allowed_tiers' must name at least one tier (null or leaving it out: every tier)",
                             param="allowed_tiers", code="invalid_value")
    try:
        limits = msgspec.convert({k: v for k, v in raw.items() if v is not None}, LimitSet)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    await store.put(tenant, limits)
    await gw.changes.announce("tenant", tenant)  # every process sharing the Redis, at once
    return Response(encoder.encode(TenantLimits(tenant, limits)), media_type="application/json")


@get(ROUTES, guards=[admin_only])
async def get_tenant_limits(gw: Gateway, tenant: str) -> Response:
    tenant = _tenant(tenant)
    limits = await _store(gw, tenant).get(tenant) or NO_LIMITS
    return Response(encoder.encode(TenantLimits(tenant, limits)), media_type="application/json")
