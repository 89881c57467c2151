"""GET /v1/models: `auto`, the tier aliases and every configured backend model."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.datastructures import State

from gateway.lifespan import Gateway
from gateway.service import TIER_ALIASES
from gateway.wire import ModelCard, ModelList, encoder


@get("/v1/models")
async def list_models(request: Request, state: State) -> Response:
    gw: Gateway = state.gateway
    await gw.auth.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    cards = [ModelCard("auto", "smart-model-router")]
    cards += [ModelCard(alias, "smart-model-router") for alias in TIER_ALIASES]
    cards += [ModelCard(b.name, b.provider) for b in gw.settings.backends]
    return Response(encoder.encode(ModelList(cards)), media_type="application/json")
