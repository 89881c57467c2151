"""Calibration, pure: the cut-offs that split a sample of scores into target tier shares.

As RouteLLM calibrates its threshold: each cut-off is the score quantile at the cumulative share of
the tiers below it, so on this sample `shares[0]` of prompts go to simple, `shares[1]` to medium.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_shares(shares: Sequence[float]) -> None:
    if len(shares) != 3 or abs(sum(shares) - 1) > 1e-6 or min(shares) < 0:
        raise ValueError("shares need three non-negative numbers adding up to 1, e.g. 0.5,0.3,0.2")


def cutoffs_for_shares(scores: Sequence[float] | np.ndarray, shares: Sequence[float]) -> tuple[float, float]:
    """(simple cut-off, medium cut-off), rounded to 4 places, the second never below the first."""
    check_shares(shares)
    s = np.asarray(scores, dtype=float)
    lo = float(np.quantile(s, shares[0]))
    hi = float(np.quantile(s, shares[0] + shares[1]))
    return round(lo, 4), round(max(hi, lo), 4)


def tier_shares(scores: Sequence[float] | np.ndarray, cutoffs: Sequence[float]) -> tuple[float, float, float]:
    """The share of the sample each tier gets with these cut-offs."""
    s = np.asarray(scores, dtype=float)
    lo, hi = cutoffs
    return float(np.mean(s < lo)), float(np.mean((s >= lo) & (s < hi))), float(np.mean(s >= hi))


def held_out(ids: Sequence[str]) -> np.ndarray:
    """A fixed half of a log, by a hash of each request id: True for the held-out half."""
    import hashlib

    return np.array([hashlib.sha256(i.encode()).digest()[0] % 2 == 1 for i in ids], dtype=bool)


def cutoffs_for_strong_share(scores: Sequence[float] | np.ndarray, strong_share: float,
                             current: Sequence[float]) -> tuple[float, float]:
    """Cut-offs that send `strong_share` of the sample to complex, keeping the share simple gets now
    (at most what is left); medium takes the rest."""
    if not 0 <= strong_share <= 1:
        raise ValueError("the strong-tier share must be between 0 and 1")
    simple = min(tier_shares(scores, current)[0], 1 - strong_share)
    return cutoffs_for_shares(scores, [simple, 1 - strong_share - simple, strong_share])


def cutoffs_for_budget(scores: Sequence[float] | np.ndarray, tier_costs: np.ndarray, budget_usd: float,
                       current: Sequence[float], step: float = 0.005) -> tuple[float, float] | None:
    """The largest strong-tier share whose cost stays within `budget_usd`: `tier_costs[i, t]` is what
    prompt i costs on tier t (simple, medium, complex). None when even no strong tier is over budget."""
    s = np.asarray(scores, dtype=float)
    best = None
    for share in np.arange(0.0, 1.0 + step / 2, step):
        cut = cutoffs_for_strong_share(s, min(float(share), 1.0), current)
        tier = (s >= cut[0]).astype(int) + (s >= cut[1]).astype(int)
        if float(tier_costs[np.arange(len(s)), tier].sum()) > budget_usd:
            break
        best = cut
    return best
