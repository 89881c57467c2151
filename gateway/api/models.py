"""GET /v1/models: `auto`, the tier aliases and every configured backend model (served by
/v1/chat/completions and /v1/responses), then the embedding models and OpenAI's embedding names mapped to
the default one (served by /v1/embeddings). Each card's `endpoints` says which."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from gateway.gateway import Gateway
from gateway.path.auth import Principal
from gateway.path.embeddings import EmbeddingService
from gateway.path.routing import TIER_ALIASES
from gateway.vocab.wire import ModelCard, encoder

CHAT = ["/v1/chat/completions", "/v1/responses"]
EMBEDDINGS = ["/v1/embeddings"]


class ServedModel(ModelCard, frozen=True):
    endpoints: list[str] = msgspec.field(default_factory=list)


class ServedModels(msgspec.Struct, frozen=True):
    data: list[ServedModel]
    object: str = "list"


@get("/v1/models")
async def list_models(request: Request, gw: Gateway, principal: Principal) -> Response:  # a valid key is needed
    cards = [ServedModel("auto", "smart-model-router", endpoints=CHAT)]
    cards += [ServedModel(alias, "smart-model-router", endpoints=CHAT) for alias in TIER_ALIASES]
    cards += [ServedModel(b.name, b.provider, endpoints=CHAT) for b in gw.settings.backends]
    embeddings: EmbeddingService | None = request.app.state.get("embeddings")
    if embeddings is not None:
        served = embeddings.served_models()
        cards += [ServedModel(b.name, b.provider, endpoints=EMBEDDINGS) for b in served]
        if served:
            cards += [ServedModel(alias, "smart-model-router", endpoints=EMBEDDINGS)
                      for alias in embeddings.cfg.aliases if alias not in embeddings.backends]
    return Response(encoder.encode(ServedModels(cards)), media_type="application/json")
