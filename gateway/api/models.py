"""GET /v1/models: `auto`, the tier aliases and every configured backend model."""

from __future__ import annotations

from litestar import Response, get

from gateway.auth import Principal
from gateway.gateway import Gateway
from gateway.routing import TIER_ALIASES
from gateway.wire import ModelCard, ModelList, encoder


@get("/v1/models")
async def list_models(gw: Gateway, principal: Principal) -> Response:  # principal: a valid key is needed
    cards = [ModelCard("auto", "smart-model-router")]
    cards += [ModelCard(alias, "smart-model-router") for alias in TIER_ALIASES]
    cards += [ModelCard(b.name, b.provider) for b in gw.settings.backends]
    return Response(encoder.encode(ModelList(cards)), media_type="application/json")
