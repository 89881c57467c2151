"""Which tier and backend chain a request goes to: a forced tier, a named backend, or the classifiers.

    model "auto"        -> the classifier pipeline scores the conversation; its tier's chain
    model "smr/<tier>"  -> that tier's chain (as does the X-SMR-Force-Tier header)
    model "<backend>"   -> that backend alone
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.settings import Backend, Settings
from gateway.wire import ChatCompletionRequest, message_text
from router_core import ClassifierPipeline, Conversation, Turn
from router_core.types import TIERS

TIER_ALIASES = {f"smr/{t}": t for t in TIERS}


class Route(msgspec.Struct, frozen=True):
    mode: Literal["auto", "forced", "direct", "cache"]
    tier: str | None
    chain: tuple[Backend, ...]
    classifier: str
    score: float | None = None
    reasons: tuple[str, ...] = ()


def conversation(req: ChatCompletionRequest, embedding: object = None,
                 embedded_text: str | None = None) -> Conversation:
    return Conversation(tuple(Turn(m.role, message_text(m)) for m in req.messages), embedding, embedded_text)


class Router:
    def __init__(self, settings: Settings, pipeline: ClassifierPipeline) -> None:
        self.default_model = settings.routing.default_model
        self.pipeline = pipeline
        self.cutoffs = pipeline.cutoffs
        by_name = {b.name: b for b in settings.backends}
        limit = settings.routing.max_attempts
        self.chains: dict[str, tuple[Backend, ...]] = {
            t: tuple(by_name[n] for n in settings.tiers.chain(t))[:limit] for t in TIERS}
        self.direct = by_name

    async def route(self, req: ChatCompletionRequest, force_tier: str | None = None, embedding: object = None,
                    embedded_text: str | None = None) -> Route:
        if force_tier is not None:
            tier = force_tier.strip().lower()
            if tier not in self.chains:
                raise InvalidRequest(f"X-SMR-Force-Tier must be one of {', '.join(TIERS)}, got {force_tier!r}",
                                     param="X-SMR-Force-Tier", code="invalid_value")
            return Route("forced", tier, self.chains[tier], "forced")
        model = req.model or self.default_model
        if model == "auto":
            decision = await self.pipeline.decide(conversation(req, embedding, embedded_text))
            return Route("auto", decision.tier, self.chains[decision.tier], decision.classifier, decision.score,
                         decision.reasons)
        if model in TIER_ALIASES:
            tier = TIER_ALIASES[model]
            return Route("forced", tier, self.chains[tier], "forced")
        backend = self.direct.get(model)
        if backend is None:
            raise ModelNotFound(f"The model '{model}' does not exist. Use 'auto', one of "
                                f"{', '.join(TIER_ALIASES)}, or a model listed by GET /v1/models.", param="model")
        return Route("direct", None, (backend,), "direct")
