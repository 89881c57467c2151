"""Why an answer came from where it did: the `smr` object of every routed response (JSON body, first and
last SSE chunk), stored with the request's log row and returned by GET /v1/requests/{id}. Pure."""

from __future__ import annotations

import msgspec

from gateway.path.accounting import RequestContext
from gateway.vocab.wire import Explanation, ShadowDecision

decode = msgspec.json.Decoder(Explanation).decode


def explain(ctx: RequestContext, cutoffs: tuple[float, float], similarity: float | None = None) -> Explanation:
    r, b, p = ctx.route, ctx.backend, ctx.priced
    score = r.score if r else None
    auto = r is not None and r.mode == "auto"
    margin = round(min(abs(score - c) for c in cutoffs), 4) if auto and score is not None else None
    return Explanation(
        request_id=ctx.request_id, route=r.mode if r else "none", cache=ctx.cache,
        tier=(r.tier or "direct") if r else None, model=b.name if b else None,
        classifier=r.classifier if r else None, score=round(score, 4) if score is not None else None,
        cutoffs=cutoffs if auto else None, margin=margin, reasons=list(r.reasons) if r and r.reasons else None,
        similarity=similarity, fallbacks=[f"{a.backend}: {a.error}" for a in ctx.attempts] or None,
        skipped=list(r.skipped) if r and r.skipped else None,
        cost_usd=round(p.cost_usd, 10) if p else None, savings_usd=round(p.savings_usd, 10) if p else None,
        routing_savings_usd=round(p.routing_savings_usd, 10) if p else None,
        cache_savings_usd=round(p.cache_savings_usd, 10) if p and p.cache_savings_usd else None,
        cascade=ctx.cascade, shadow=shadow(ctx))


def shadow(ctx: RequestContext) -> ShadowDecision | None:
    s, sp, p = ctx.shadow, ctx.shadow_priced, ctx.priced
    if s is None or s.tier is None:
        return None
    return ShadowDecision(s.tier, s.chain[0].name, s.classifier, round(s.score, 4) if s.score is not None else None,
                          round(sp.cost_usd, 10) if sp else None,
                          round(p.cost_usd - sp.cost_usd, 10) if sp and p else None)
