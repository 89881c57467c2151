"""Pure cost functions. Prices are US dollars per 1M tokens."""

from __future__ import annotations

import msgspec

from gateway.settings import Backend
from gateway.wire import ChatCompletionRequest, Usage, message_text
from router_core.features import estimate_tokens

PER_TOKEN = 1e-6


class Priced(msgspec.Struct, frozen=True):
    """One answer's usage with what it cost and what the baseline model would have cost.

    The savings are two parts, each against its own baseline, never counted twice: routing saved the
    baseline model's cost minus the routed model's; a cache hit also saved the routed model's cost (what
    the same model would have cost without the cache)."""

    usage: Usage
    cost_usd: float
    baseline_cost_usd: float
    cache_savings_usd: float = 0.0

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def routing_savings_usd(self) -> float:
        return self.savings_usd - self.cache_savings_usd


def cost_usd(usage: Usage, backend: Backend) -> float:
    """What this usage costs at this backend's prices; cached prompt tokens at the cached price."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_price = backend.input_price if backend.cached_input_price is None else backend.cached_input_price
    return PER_TOKEN * (
        (usage.prompt_tokens - cached) * backend.input_price
        + cached * cached_price
        + usage.completion_tokens * backend.output_price
    )


def baseline_cost_usd(usage: Usage, baseline: Backend) -> float:
    """The same tokens priced at the baseline (always-the-strongest) model, with no cache discount."""
    return PER_TOKEN * (usage.prompt_tokens * baseline.input_price + usage.completion_tokens * baseline.output_price)


def savings_usd(usage: Usage, backend: Backend, baseline: Backend) -> float:
    return baseline_cost_usd(usage, baseline) - cost_usd(usage, backend)


def price(usage: Usage, backend: Backend, baseline: Backend) -> Priced:
    return Priced(usage, cost_usd(usage, backend), baseline_cost_usd(usage, baseline))


def price_cache_hit(usage: Usage, backend: Backend | None, baseline: Backend) -> Priced:
    """A cache hit costs nothing upstream. Of the baseline cost of the stored answer's tokens, the cache
    saved what the model that answered would have cost again; routing saved the rest."""
    saved_by_cache = cost_usd(usage, backend) if backend is not None else baseline_cost_usd(usage, baseline)
    return Priced(usage, 0.0, baseline_cost_usd(usage, baseline), saved_by_cache)


def with_first_call(final: Priced | None, first: Priced) -> Priced:
    """A cascaded request: both calls' tokens and cost; the baseline is still one call of the baseline
    model for the answer sent (so savings may be negative: the cascade cost more than the strong model)."""
    if final is None:
        return first
    a, b = first.usage, final.usage
    usage = Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                  a.total_tokens + b.total_tokens, a.cached_tokens + b.cached_tokens, a.estimated or b.estimated)
    return Priced(usage, first.cost_usd + final.cost_usd, final.baseline_cost_usd, final.cache_savings_usd)


def prompt_tokens(req: ChatCompletionRequest) -> int:
    """The prompt's estimated tokens (before an upstream says; for limits, budgets and missing usage)."""
    return sum(estimate_tokens(message_text(m)) for m in req.messages)


def fill_usage(usage: Usage, req: ChatCompletionRequest, text: str) -> Usage:
    """The upstream's usage, or an estimate (marked as such) where it sent none or only part."""
    if not usage.estimated and usage.total_tokens:
        return usage
    p = usage.prompt_tokens or prompt_tokens(req)
    c = usage.completion_tokens or estimate_tokens(text)
    return Usage(p, c, p + c, usage.cached_tokens, estimated=True)
