"""Which tier and backend chain a request goes to: a forced tier, a named backend, or the classifiers.

    model "auto"        -> the classifier pipeline scores the conversation; its tier's chain
    model "smr/<tier>"  -> that tier's chain (as does the X-SMR-Force-Tier header)
    model "<backend>"   -> that backend alone

Shadow mode (`routing.shadow`) serves `auto` on the strongest tier and everything else as named, and
`would_route` says what `auto` would have chosen. A cascade tier's answer may go once to the tier above
(`escalation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from gateway.vocab.errors import InvalidRequest, ModelNotFound
from gateway.vocab.settings import Backend, Settings
from gateway.vocab.wire import ChatCompletionRequest, ImagePart, message_text
from router_core import ClassifierPipeline, Conversation, Turn
from router_core.conversation import ConversationPolicy, decide_in_conversation
from router_core.types import TIERS

TIER_ALIASES = {f"smr/{t}": t for t in TIERS}


class Route(msgspec.Struct, frozen=True):
    mode: Literal["auto", "forced", "direct", "cache", "shadow"]
    tier: str | None
    chain: tuple[Backend, ...]
    classifier: str
    score: float | None = None
    reasons: tuple[str, ...] = ()
    # Classifiers that did not decide (declined, failed, timed out), and backends (and tiers) passed over
    # because the request needs what they lack, and why.
    skipped: tuple[str, ...] = ()


class Needs(msgspec.Struct, frozen=True):
    """What a request needs of a model (pure: from the request alone)."""

    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    tokens: int = 0  # the prompt's estimate plus the answer's limit

    @classmethod
    def of(cls, req: ChatCompletionRequest) -> Needs:
        vision = any(isinstance(p, ImagePart) for m in req.messages if isinstance(m.content, list)
                     for p in m.content)
        fmt = (req.response_format or {}).get("type")
        chars = sum(len(message_text(m)) for m in req.messages)
        return cls(tools=bool(req.tools), vision=vision, json_mode=fmt in ("json_object", "json_schema"),
                   tokens=chars // 4 + (req.output_limit or 0))


def lacks(backend: Backend, needs: Needs) -> str | None:
    """Why this backend cannot serve a request with these needs, or None."""
    c = backend.capabilities
    if needs.tools and not c.tools:
        return "no tool calling"
    if needs.vision and not c.vision:
        return "no image input"
    if needs.json_mode and not c.json_mode:
        return "no JSON mode"
    if needs.tokens > c.context_window:
        return f"context window {c.context_window} < ~{needs.tokens} tokens"
    return None


def unable(backends: Iterable[Backend], needs: Needs) -> dict[str, str]:
    """Each of `backends` that cannot serve a request with these needs, by name, with why."""
    return {b.name: w for b in backends if (w := lacks(b, needs)) is not None}


def conversation(req: ChatCompletionRequest, embedding: object = None,
                 embedded_text: str | None = None) -> Conversation:
    return Conversation(tuple(Turn(m.role, message_text(m)) for m in req.messages), embedding, embedded_text)


class Router:
    def __init__(self, settings: Settings, pipeline: ClassifierPipeline) -> None:
        self.default_model = settings.routing.default_model
        self.pipeline = pipeline
        self.cutoffs = pipeline.cutoffs
        r = settings.routing
        self.conversations = ConversationPolicy(r.follow_up_tokens, r.follow_up_decay, r.sticky_margin,
                                                r.conversation_lookback)
        self.budget_steps = sorted(r.budget_downgrade)
        self.shadow = r.shadow
        self.cascade = frozenset(settings.tiers.cascade)
        by_name = {b.name: b for b in settings.backends}
        limit = settings.routing.max_attempts
        self.chains: dict[str, tuple[Backend, ...]] = {
            t: tuple(by_name[n] for n in settings.tiers.chain(t))[:limit] for t in TIERS}
        self.direct = by_name

    async def route(self, req: ChatCompletionRequest, force_tier: str | None = None, embedding: object = None,
                    embedded_text: str | None = None, budget_used: float = 0.0, as_asked: bool = False) -> Route:
        """`budget_used`: the largest share of the caller's budgets spent or held; `auto` shifts down by
        routing.budget_downgrade's steps as it nears 1. `as_asked` (shadow mode): `auto` is not routed but
        served by the strongest tier."""
        if as_asked and force_tier is None and (req.model or self.default_model) == "auto":
            route = Route("shadow", TIERS[-1], self.chains[TIERS[-1]], "shadow")  # routing off: the strongest
        else:
            route = await self._choose(req, force_tier, embedding, embedded_text)
        if route.mode == "auto" and budget_used > 0:
            route = self._downgrade(route, budget_used)
        return self._fit(route, Needs.of(req))

    async def would_route(self, req: ChatCompletionRequest, embedding: object = None,
                          embedded_text: str | None = None) -> Route | None:
        """What `auto` would choose for this request, whatever it names (shadow mode); None when no
        backend could serve it."""
        try:
            return self._fit(await self._auto(req, embedding, embedded_text), Needs.of(req))
        except InvalidRequest:
            return None

    def escalation(self, route: Route, req: ChatCompletionRequest) -> Route | None:
        """The route a cascade tier's failed answer goes to: the nearest tier above with a backend that
        can serve the request. None when `route` does not cascade."""
        if route.mode != "auto" or route.tier not in self.cascade:
            return None
        needs = Needs.of(req)
        for tier in TIERS[TIERS.index(route.tier) + 1:]:  # type: ignore[arg-type]
            chain = tuple(b for b in self.chains[tier] if lacks(b, needs) is None)
            if chain:
                return msgspec.structs.replace(route, tier=tier, chain=chain)
        return None

    def _downgrade(self, route: Route, used: float) -> Route:
        shift = max((s for share, s in self.budget_steps if used >= share), default=0)
        if not shift or route.tier not in TIERS:
            return route
        tier = TIERS[max(0, TIERS.index(route.tier) - shift)]  # type: ignore[arg-type]
        if tier == route.tier:
            return route
        why = f"budget: {used:.0%} of a budget spent or held: {route.tier} -> {tier}"
        return msgspec.structs.replace(route, tier=tier, chain=self.chains[tier], reasons=(why, *route.reasons))

    def _fit(self, route: Route, needs: Needs) -> Route:
        """The route without the backends this request cannot use. `auto` moves to the nearest tier (up
        first) that has one; a forced tier or a named backend that cannot serve it is a 400."""
        why = unable(route.chain, needs)
        if not why:
            return route
        skipped = tuple(f"{name}: {w}" for name, w in why.items())
        capable = tuple(b for b in route.chain if b.name not in why)
        if capable:
            return msgspec.structs.replace(route, chain=capable, skipped=(*route.skipped, *skipped))
        where = f"the model {route.chain[0].name}" if route.mode == "direct" else f"the {route.tier} tier"
        if route.mode == "auto" and route.tier in TIERS:
            i = TIERS.index(route.tier)  # type: ignore[arg-type]
            for tier in (*TIERS[i + 1:], *reversed(TIERS[:i])):
                chain = tuple(b for b in self.chains[tier] if lacks(b, needs) is None)
                if chain:
                    return msgspec.structs.replace(route, tier=tier, chain=chain,
                                                   skipped=(*route.skipped, *skipped,
                                                            f"tier {route.tier}: no backend can serve it"))
            # Every tier tried: each backend's reason, once.
            where = "any tier"
            why = unable((b for t in TIERS for b in self.chains[t]), needs)
        way_out = "; use 'auto' or another model" if route.mode in ("forced", "direct") else ""
        raise InvalidRequest(f"No backend of {where} can serve this request "
                             f"({'; '.join(f'{n}: {w}' for n, w in why.items())}){way_out}",
                             param="messages", code="unsupported_request")

    async def _choose(self, req: ChatCompletionRequest, force_tier: str | None, embedding: object,
                      embedded_text: str | None) -> Route:
        if force_tier is not None:
            tier = force_tier.strip().lower()
            if tier not in self.chains:
                raise InvalidRequest(f"X-SMR-Force-Tier must be one of {', '.join(TIERS)}, got {force_tier!r}",
                                     param="X-SMR-Force-Tier", code="invalid_value")
            return Route("forced", tier, self.chains[tier], "forced")
        model = req.model or self.default_model
        if model == "auto":
            return await self._auto(req, embedding, embedded_text)
        if model in TIER_ALIASES:
            tier = TIER_ALIASES[model]
            return Route("forced", tier, self.chains[tier], "forced")
        backend = self.direct.get(model)
        if backend is None:
            raise ModelNotFound(f"The model '{model}' does not exist. Use 'auto', one of "
                                f"{', '.join(TIER_ALIASES)}, or a model listed by GET /v1/models.", param="model")
        return Route("direct", None, (backend,), "direct")

    async def _auto(self, req: ChatCompletionRequest, embedding: object, embedded_text: str | None) -> Route:
        decision = await decide_in_conversation(self.pipeline, conversation(req, embedding, embedded_text),
                                                self.conversations)
        return Route("auto", decision.tier, self.chains[decision.tier], decision.classifier, decision.score,
                     decision.reasons, tuple(f"classifier {s}" for s in decision.skipped))
