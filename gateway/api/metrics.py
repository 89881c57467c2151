"""GET /metrics: Prometheus text for this process. Needs the admin key when auth is on (scrape with
`authorization: {credentials: <admin key>}`); open when auth is off, like every other endpoint."""

from __future__ import annotations

import msgspec
from litestar import Response, get

from gateway.api.deps import admin_when_auth_on
from gateway.gateway import Gateway
from gateway.metrics import render

CONTENT_TYPE = "text/plain; version=0.0.4"  # Litestar adds "; charset=utf-8" to a text/* type itself


@get("/metrics", guards=[admin_when_auth_on])
async def metrics(gw: Gateway) -> Response:
    cache: dict[str, object] | None = None
    if gw.cache is not None:
        cache = {**msgspec.to_builtins(gw.cache.stats), "store_up": await gw.cache.reachable()}
    writer = msgspec.to_builtins(gw.writer.stats) if gw.writer is not None else None
    limits = {k: v for k, v in msgspec.to_builtins(gw.admission.stats).items() if k != "last_error"}
    circuits = {b.name: gw.breakers.state(b.name) for b in gw.settings.backends}
    return Response(render(gw.metrics, cache, writer, limits, circuits), media_type=CONTENT_TYPE)
