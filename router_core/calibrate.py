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
