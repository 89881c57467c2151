"""Pure routing policy: a score in [0, 1] and two cut-offs give a tier."""

from __future__ import annotations

import math


def tier_for(score: float, cutoffs: tuple[float, float]) -> str:
    """score < cutoffs[0] -> simple, score < cutoffs[1] -> medium, else complex."""
    if math.isnan(score):
        raise ValueError("score is NaN")
    simple_below, medium_below = cutoffs
    if score < simple_below:
        return "simple"
    if score < medium_below:
        return "medium"
    return "complex"
