from __future__ import annotations

import pytest

from gateway.vocab.pricing import baseline_cost_usd, cost_usd, savings_usd
from gateway.vocab.settings import Backend
from gateway.vocab.wire import Usage

PRO = Backend(name="pro", provider="gemini", model="p", input_price=1.25, output_price=10.0, cached_input_price=0.31)
FLASH = Backend(name="flash", provider="gemini", model="f", input_price=0.30, output_price=2.50)


def test_cost_from_usage() -> None:
    u = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000)
    assert cost_usd(u, PRO) == pytest.approx(11.25)
    assert cost_usd(u, FLASH) == pytest.approx(2.80)
    assert savings_usd(u, FLASH, PRO) == pytest.approx(8.45)
    assert savings_usd(u, PRO, PRO) == 0


def test_cached_prompt_tokens_use_the_cached_price() -> None:
    u = Usage(prompt_tokens=1_000_000, completion_tokens=0, total_tokens=1_000_000, cached_tokens=400_000)
    assert cost_usd(u, PRO) == pytest.approx(0.6 * 1.25 + 0.4 * 0.31)
    # No cached price configured: cached tokens cost the normal input price.
    assert cost_usd(u, FLASH) == pytest.approx(0.30)
    # The baseline gets no cache discount.
    assert baseline_cost_usd(u, PRO) == pytest.approx(1.25)


def test_zero_usage_costs_nothing() -> None:
    assert cost_usd(Usage(), PRO) == 0 == savings_usd(Usage(), FLASH, PRO)
