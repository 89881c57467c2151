"""GET /v1/usage: requests, tokens, cost, savings and latency per group. A key sees its own tenant.

`view=shadow`: requests served in shadow mode (routing.shadow), with what routing would have cost.
`view=learning`: what learning's own calls (reference answers and judges, gateway.learning) cost; the
served view leaves them out. Its `learning` object is what the dashboard draws (gateway/learning/report.py):
the judged share, each tier pair's quality/cost curve, the semantic cache's measured wrong-hit rate, and
learning's spend apart from serving's."""

from __future__ import annotations

from typing import cast

import msgspec
from litestar import Request, Response, get

from gateway.api.deps import key_param, label_param
from gateway.db.usage import GROUP_SQL, GroupBy, UsageReport, View, parse_time
from gateway.gateway import Gateway
from gateway.learning.report import LearningUsageReport, summarize
from gateway.path.auth import Principal
from gateway.vocab.errors import InvalidRequest, PermissionDenied
from gateway.vocab.wire import encoder


@get("/v1/usage")
async def get_usage(request: Request, gw: Gateway, principal: Principal) -> Response:
    if gw.log_queries is None:
        raise PermissionDenied("usage needs the database, which is disabled")
    q = request.query_params
    group_by = q.get("group_by", "day")
    if group_by not in GROUP_SQL:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(GROUP_SQL)}", param="group_by",
                             code="invalid_value")
    view = q.get("view", "served")
    if view not in ("served", "shadow", "learning"):
        raise InvalidRequest("'view' must be 'served', 'shadow' or 'learning'", param="view", code="invalid_value")
    start, end = parse_time(q.get("from"), "from"), parse_time(q.get("to"), "to")
    tenant = label_param(request, "tenant") if principal.admin else principal.tenant
    groups = await gw.log_queries.usage(cast(View, view), cast(GroupBy, group_by), start, end, tenant,
                                        key_param(request))
    report = UsageReport(group_by=group_by, tenant=tenant, data=groups, from_=start, to=end, view=view)
    if view == "learning":
        figures = await gw.log_queries.learning(start, end, tenant, key_param(request))
        rule = gw.cache.acceptance.report() if gw.cache is not None and gw.cache.semantic else None
        report = LearningUsageReport(**msgspec.structs.asdict(report), learning=summarize(figures, gw.settings, rule))
    return Response(encoder.encode(report), media_type="application/json")
