"""What every routed endpoint does first: open the request's accounting context and authenticate."""

from __future__ import annotations

from litestar import Request

from gateway.accounting import RequestContext
from gateway.errors import PermissionDenied
from gateway.lifespan import Gateway
from gateway.service import Route


async def begin(request: Request, gw: Gateway, endpoint: str) -> RequestContext:
    ctx = RequestContext(endpoint)
    request.state.ctx = ctx  # the error handler logs failed requests from it
    ctx.principal = await gw.auth.authenticate(request.headers.get("authorization"),
                                               request.headers.get("x-api-key"))
    return ctx


def check_route_allowed(ctx: RequestContext, route: Route) -> None:
    p = ctx.principal
    if p is not None and p.allowed_tiers and (route.tier or "direct") not in p.allowed_tiers:
        raise PermissionDenied(f"This API key may not use the {route.tier or 'direct'} route; "
                               f"allowed: {', '.join(p.allowed_tiers)}")
