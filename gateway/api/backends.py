"""GET /v1/backends (admin): every configured backend as the console shows it.

Its provider and model, the tiers whose chains hold it, whether it is the baseline, its prices (US dollars
per 1M tokens), what it can take (capabilities, max output tokens), whether it is configured (its key and
URL) and its circuit breaker's state in this process. Never a key or the name of its variable; whether it
is reachable is `/health`'s to say (it opens a connection)."""

from __future__ import annotations

import msgspec
from litestar import Response, get

from gateway.api.deps import admin_only
from gateway.gateway import Gateway
from gateway.vocab.settings import Backend, Capabilities, Settings
from gateway.vocab.wire import encoder
from router_core.types import TIERS


class BackendInfo(msgspec.Struct, frozen=True):
    name: str
    provider: str
    model: str
    tiers: list[str]              # the tiers whose chain holds it, in tier order
    baseline: bool                # the model savings are counted against
    input_price: float
    output_price: float
    cached_input_price: float | None
    max_output_tokens: int
    capabilities: Capabilities
    simulated: bool
    configured: bool
    circuit: str                  # closed | open | half_open (this process)
    detail: str | None = None     # why it is not configured
    object: str = "backend"


class BackendList(msgspec.Struct, frozen=True):
    data: list[BackendInfo]
    object: str = "list"


def _named(b: Backend, names: list[str]) -> bool:
    return b.name in names or b.model in names


def describe(gw: Gateway, settings: Settings) -> list[BackendInfo]:
    out = []
    for b in settings.backends:
        reason = gw.providers[b.name].unavailable_reason()
        tiers: list[str] = [t for t in TIERS if _named(b, settings.tiers.chain(t))]
        out.append(BackendInfo(
            b.name, b.provider, b.model, tiers, _named(b, [settings.routing.baseline]), b.input_price,
            b.output_price, b.cached_input_price, b.max_output_tokens, b.capabilities, b.simulated,
            reason is None, gw.breakers.state(b.name), reason))
    return out


@get("/v1/backends", guards=[admin_only])
async def list_backends(gw: Gateway) -> Response:
    return Response(encoder.encode(BackendList(describe(gw, gw.settings))), media_type="application/json")
