"""Pure cost functions. Prices are US dollars per 1M tokens."""

from __future__ import annotations

from gateway.settings import Backend
from gateway.wire import Usage

PER_TOKEN = 1e-6


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
