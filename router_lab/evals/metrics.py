"""RouteLLM's router metrics, pure numpy.

A router scores each prompt; routing the top share of scores to the strong model and the rest to the
cheap one gives a quality (mean correctness). PGR = (quality - cheap) / (strong - cheap): the share of
the quality gap recovered. APGR is the area under PGR as the strong share goes 0 -> 100 %
(random routing: 0.5). CPT(x) is the strong share needed to recover x of the gap.
"""

from __future__ import annotations

import msgspec
import numpy as np


class Curve(msgspec.Struct, frozen=True):
    share: list[float]     # share of prompts sent to the strong model
    quality: list[float]   # mean correctness at that share
    pgr: list[float]       # performance gap recovered


class Report(msgspec.Struct, frozen=True):
    n: int
    cheap_quality: float
    strong_quality: float
    apgr: float
    cpt50: float
    cpt80: float
    share_at_95: float
    cost_saving_at_95: float


def curve(scores: np.ndarray, cheap_ok: np.ndarray, strong_ok: np.ndarray) -> Curve:
    """Send prompts to the strong model in order of decreasing score (ties broken by input order)."""
    n = len(scores)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    gain = (np.asarray(strong_ok, dtype=float) - np.asarray(cheap_ok, dtype=float))[order]
    base = float(np.sum(cheap_ok))
    totals = base + np.concatenate([[0.0], np.cumsum(gain)])
    quality = totals / n
    cheap_q, strong_q = base / n, float(np.mean(strong_ok))
    gap = strong_q - cheap_q
    pgr = (quality - cheap_q) / gap if gap else np.ones_like(quality)
    share = np.arange(n + 1) / n
    return Curve(share.tolist(), quality.tolist(), pgr.tolist())


def apgr(c: Curve) -> float:
    s, p = np.asarray(c.share), np.asarray(c.pgr)
    return float(np.sum((s[1:] - s[:-1]) * (p[1:] + p[:-1]) / 2))


def cpt(c: Curve, target: float) -> float:
    for s, p in zip(c.share, c.pgr, strict=True):
        if p >= target - 1e-12:
            return float(s)
    return 1.0


def report(scores: np.ndarray, cheap_ok: np.ndarray, strong_ok: np.ndarray, cheap_cost: float = 0.0,
           strong_cost: float = 1.0) -> Report:
    """`cheap_cost` / `strong_cost`: cost of one prompt on each model, for the saving at 95 % quality."""
    c = curve(scores, cheap_ok, strong_ok)
    strong_q = float(np.mean(strong_ok))
    share95 = 1.0
    for s, q in zip(c.share, c.quality, strict=True):
        if q >= 0.95 * strong_q - 1e-12:
            share95 = float(s)
            break
    cost = share95 * strong_cost + (1 - share95) * cheap_cost
    return Report(n=len(scores), cheap_quality=float(np.mean(cheap_ok)), strong_quality=strong_q, apgr=apgr(c),
                  cpt50=cpt(c, 0.5), cpt80=cpt(c, 0.8), share_at_95=share95,
                  cost_saving_at_95=1 - cost / strong_cost if strong_cost else 0.0)
