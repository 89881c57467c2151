"""Admission: may this caller make this request, and may it take this route?

Two checks on the request path (`RequestPath.serve`): `admit` before anything else (request-level
rules), and `check_route` once the route is known (a key's allowed tiers, before any call; a cached
answer from a tier the key may not use is not served either). Rate limits and budgets belong here.
"""

from __future__ import annotations

from gateway.auth import Principal
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.settings import RoutingSettings
from gateway.wire import ChatCompletionRequest


class Admission:
    def __init__(self, routing: RoutingSettings) -> None:
        self.allow_n = routing.allow_n_greater_than_one

    async def admit(self, principal: Principal, req: ChatCompletionRequest) -> None:
        if req.n is not None and req.n > 1 and not self.allow_n:
            raise InvalidRequest("n > 1 is not supported by this gateway; send n = 1 or leave it out",
                                 param="n", code="unsupported_value")

    @staticmethod
    def tier_allowed(principal: Principal, tier: str | None) -> bool:
        return not principal.allowed_tiers or (tier or "direct") in principal.allowed_tiers

    def check_route(self, principal: Principal, tier: str | None) -> None:
        if not self.tier_allowed(principal, tier):
            allowed = ", ".join(principal.allowed_tiers or ())
            raise PermissionDenied(f"This API key may not use the {tier or 'direct'} route; allowed: {allowed}")
