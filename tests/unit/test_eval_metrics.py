"""Router metrics on tiny examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from router_lab.evals.metrics import apgr, cpt, curve, report

# Four prompts. The cheap model gets #0 and #1 right, the strong one #0, #1, #2 (never #3).
CHEAP = np.array([1, 1, 0, 0])
STRONG = np.array([1, 1, 1, 0])


def test_perfect_router() -> None:
    # Prompt #2 (the only one the strong model fixes) scores highest.
    c = curve(np.array([0.1, 0.2, 0.9, 0.3]), CHEAP, STRONG)
    # share 0: quality 2/4 -> PGR 0; from share 1/4 on, quality 3/4 -> PGR 1.
    assert c.pgr == [0.0, 1.0, 1.0, 1.0, 1.0]
    # Area: first quarter is a triangle (0.125), the rest is 0.75.
    assert apgr(c) == pytest.approx(0.875)
    assert cpt(c, 0.5) == 0.25 and cpt(c, 0.8) == 0.25


def test_worst_router() -> None:
    c = curve(np.array([0.9, 0.8, 0.1, 0.7]), CHEAP, STRONG)
    assert c.pgr == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert apgr(c) == pytest.approx(0.125)
    assert cpt(c, 0.5) == 1.0


def test_report_cost_saving_at_95_percent_quality() -> None:
    r = report(np.array([0.1, 0.2, 0.9, 0.3]), CHEAP, STRONG, cheap_cost=0.1, strong_cost=1.0)
    assert r.cheap_quality == 0.5 and r.strong_quality == 0.75
    # 95 % of 0.75 is 0.7125: reached at share 1/4; cost 0.25 * 1 + 0.75 * 0.1 = 0.325.
    assert r.share_at_95 == 0.25 and r.cost_saving_at_95 == pytest.approx(0.675)


def test_random_router_scores_about_half() -> None:
    rng = np.random.default_rng(0)
    cheap = rng.random(4000) < 0.6
    strong = cheap | (rng.random(4000) < 0.5)
    scores = np.mean([apgr(curve(rng.random(4000), cheap, strong)) for _ in range(20)])
    assert 0.47 < scores < 0.53
