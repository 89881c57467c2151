"""GET /v1/usage: requests, tokens, cost, savings and latency per group. A key sees its own tenant.

`view=shadow`: requests served in shadow mode (routing.shadow), with what routing would have cost."""

from __future__ import annotations

import datetime as dt

from litestar import Request, Response, get

from gateway.api.deps import key_param, label_param
from gateway.auth import Principal
from gateway.db.usage import GROUP_SQL, UsageReport, shadow_usage, usage
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.gateway import Gateway
from gateway.wire import encoder


def parse_time(value: str | None, param: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"'{param}' must be an ISO 8601 date or time, got {value!r}", param=param,
                             code="invalid_value") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@get("/v1/usage")
async def get_usage(request: Request, gw: Gateway, principal: Principal) -> Response:
    if gw.pool is None:
        raise PermissionDenied("usage needs the database, which is disabled")
    q = request.query_params
    group_by = q.get("group_by", "day")
    if group_by not in GROUP_SQL:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(GROUP_SQL)}", param="group_by",
                             code="invalid_value")
    view = q.get("view", "served")
    if view not in ("served", "shadow"):
        raise InvalidRequest("'view' must be 'served' or 'shadow'", param="view", code="invalid_value")
    start, end = parse_time(q.get("from"), "from"), parse_time(q.get("to"), "to")
    tenant = label_param(request, "tenant") if principal.admin else principal.tenant
    query = shadow_usage if view == "shadow" else usage
    groups = await query(gw.pool, group_by, start, end, tenant, key_param(request))  # type: ignore[operator, arg-type]
    report = UsageReport(group_by=group_by, tenant=tenant, data=groups, from_=start, to=end, view=view)
    return Response(encoder.encode(report), media_type="application/json")
