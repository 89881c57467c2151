"""GET /metrics: Prometheus text for this process. Needs the admin key when auth is on (scrape with
`authorization: {credentials: <admin key>}`); open when auth is off, like every other endpoint."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State

from gateway.lifespan import Gateway
from gateway.metrics import render

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@get("/metrics")
async def metrics(request: Request, state: State) -> Response:
    gw: Gateway = state.gateway
    if gw.auth.enabled:
        gw.auth.require_admin(request.headers.get("authorization"), request.headers.get("x-api-key"))
    cache: dict[str, object] | None = None
    if gw.cache is not None:
        cache = {**msgspec.to_builtins(gw.cache.stats), "store_up": await gw.cache.reachable()}
    writer = msgspec.to_builtins(gw.writer.stats) if gw.writer is not None else None
    return Response(render(gw.metrics, cache, writer), media_type=CONTENT_TYPE)
