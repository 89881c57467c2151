"""The quality/cost curve of one tier pair, from judged traffic (pure; numpy only).

For a tier pair (the cheaper tier that served, the reference tier) the judgements give, per request, the
served answer's quality (0 where the judge preferred the reference's, else 1) and the reference's (0 where
the judge preferred the served one). Sending the requests the router scores highest to the reference
tier, `curve` is the share of the reference's quality kept against the number of calls sent up; APGR is
its mean height above the cheap tier's quality, as a share of the gap to the reference's (0.5 for a
router that cannot tell, 1 for one that sends exactly the requests that need it first).

`pair_curve` is what `smr eval --from-logs` prints for a pair and what the dashboard draws
(`GET /v1/usage?view=learning`): the same function, so the two never disagree on the same scores. The
command re-scores the prompts with the configured router; the dashboard uses the scores logged when the
requests were served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
import numpy as np

STEPS = 10  # the curve is reported at 0 %, 10 %, ..., 100 % of calls on the reference tier


class Judged(Protocol):
    """What the curve reads of a judgement (gateway.learning.store.Judgement)."""

    @property
    def verdict(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def reference_tier(self) -> str: ...


class CurvePoint(msgspec.Struct, frozen=True):
    reference_share: float  # share of the pair's calls sent to the reference tier
    cheap_share: float      # 1 - reference_share: share of calls left on the cheaper tier
    quality: float          # share of the reference's quality kept


class PairCurve(msgspec.Struct, frozen=True):
    """One tier pair: its curve, APGR, and where today's cut-off puts it (the operating point)."""

    pair: str                   # "simple->complex"
    judged: int
    apgr: float
    cheap_quality: float        # all on the cheaper tier
    cutoff: float               # today's cut-off between the two tiers (routing.cutoffs)
    quality_at_cutoff: float    # the operating point: quality kept ...
    reference_share_at_cutoff: float  # ... with this share of calls on the reference tier
    points: list[CurvePoint]


def qualities(js: Sequence[Judged]) -> tuple[np.ndarray, np.ndarray]:
    weak = np.array([0.0 if j.verdict == "reference" else 1.0 for j in js])
    strong = np.array([0.0 if j.verdict == "served" else 1.0 for j in js])
    return weak, strong


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Expected quality (a share of the reference's) with the k highest-scored requests on the reference
    tier, k = 0..n; requests with equal scores are taken in random order (their gains averaged)."""
    gain = strong - weak
    order = np.argsort(-scores, kind="mergesort")
    s, g = scores[order], gain[order].copy()
    for v in np.unique(s):
        tie = s == v
        g[tie] = g[tie].mean()
    kept = (weak.sum() + np.concatenate([[0.0], np.cumsum(g)])) / max(strong.sum(), 1e-9)
    return np.asarray(kept)


def apgr(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    c = curve(scores, weak, strong)
    gap = c[-1] - c[0]
    return float(np.mean((c - c[0]) / gap)) if gap > 0 else 1.0


def quality_at(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, cutoff: float) -> tuple[float, float]:
    """(quality kept, share of calls on the reference tier) routing score >= cutoff to the reference."""
    up = scores >= cutoff
    return float(np.where(up, strong, weak).sum() / max(strong.sum(), 1e-9)), float(up.mean())


def cutoff_for_quality(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, target: float) -> float:
    """The highest cut-off (fewest reference calls) keeping `target` of the reference's quality on this
    sample; halfway to the next lower score, so a request scored between them goes up."""
    values = np.unique(scores)[::-1]
    if quality_at(scores, weak, strong, float("inf"))[0] >= target:
        return 1.0
    for i, v in enumerate(values):
        if quality_at(scores, weak, strong, float(v))[0] >= target:
            below = float(values[i + 1]) if i + 1 < len(values) else 0.0
            return round((float(v) + below) / 2, 4)
    return 0.0


def pair_cutoff(tier: str, cutoffs: Sequence[float]) -> float:
    """Today's cut-off between `tier` and the one above it: the lower for simple, else the upper."""
    return float(cutoffs[0] if tier == "simple" else cutoffs[1])


def pair_curve(tier: str, reference: str, scores: np.ndarray, weak: np.ndarray, strong: np.ndarray,
               cutoff: float) -> PairCurve:
    """The pair's curve at STEPS + 1 points, its APGR, and the operating point at `cutoff`."""
    c = curve(scores, weak, strong)
    q, up = quality_at(scores, weak, strong, cutoff)
    points = []
    for k in range(STEPS + 1):
        share = k / STEPS
        points.append(CurvePoint(share, round(1 - share, 4), round(float(c[round(share * (len(c) - 1))]), 4)))
    return PairCurve(f"{tier}->{reference}", len(scores), round(apgr(scores, weak, strong), 4), round(float(c[0]), 4),
                     cutoff, round(q, 4), round(up, 4), points)


def pair_curves(js: Sequence[Judged], scores: np.ndarray, cutoffs: Sequence[float]) -> list[PairCurve]:
    """Each tier pair's curve (sorted by pair), `scores[i]` being the router's score of `js[i]`."""
    out = []
    for tier, reference in sorted({(j.tier, j.reference_tier) for j in js}):
        idx = [i for i, j in enumerate(js) if (j.tier, j.reference_tier) == (tier, reference)]
        weak, strong = qualities([js[i] for i in idx])
        out.append(pair_curve(tier, reference, scores[idx], weak, strong, pair_cutoff(tier, cutoffs)))
    return out
