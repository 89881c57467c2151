"""What the dashboard shows of learning (`GET /v1/usage?view=learning`'s `learning` object), from the raw
figures of a window (gateway.db.usage.learning_figures). Pure.

- the judged share: judgements / answered `auto` requests in the window;
- each tier pair's quality/cost curve (gateway/learning/curve.py, as `smr eval --from-logs` prints it) on
  the scores the router logged when it served, with today's operating point (routing.cutoffs);
- the semantic cache's measured wrong-hit rate: checked hits judged wrong / checked hits judged right or
  wrong, with its Wilson 95% upper bound and the bound set (cache.max_wrong_hit_rate), beside the
  acceptance rule in force now (what /health says: learned from every tenant's checks);
- learning's spend, apart from the serving spend.
A tenant's figures are those of its own requests; the rule in force is the gateway's, as /health shows it.
"""

from __future__ import annotations

import msgspec
import numpy as np

from gateway.cache.acceptance import wilson_upper
from gateway.db.usage import LearningFigures, UsageReport, money
from gateway.learning.curve import PairCurve, pair_curves
from gateway.vocab.settings import Settings


class CacheFigures(msgspec.Struct, frozen=True):
    checks: int                         # checked semantic hits judged right or wrong (in the window)
    wrong: int                          # of which the cached answer was wrong
    unsure: int                         # checked hits the judge gave no verdict on (counted for neither)
    near_misses: int                    # checked near misses (candidates just under the threshold)
    wrong_hit_rate: float | None        # wrong / checks (None: no checks)
    wrong_hit_rate_upper: float | None  # its Wilson 95% upper bound
    bound: float                        # cache.max_wrong_hit_rate
    threshold: float | None             # the similarity a semantic hit needs now (None: no semantic cache)
    source: str                         # "learned", "configured", "closed", or "off" (no semantic cache)
    rule_checks: int = 0                # the checks the rule in force was computed from (all tenants)
    rule_rests_on: int = 0              # of which at or above its threshold


class LearningSummary(msgspec.Struct, frozen=True):
    on: bool                    # learning.sample_rate > 0
    sample_rate: float
    auto_requests: int
    judged: int
    judged_share: float         # judged / auto_requests
    verdicts: dict[str, int]    # "served", "reference", "tie"
    scored: int                 # judgements with a router score: what the curves rest on
    pairs: list[PairCurve]
    cache: CacheFigures
    learning_cost_usd: float    # learning's own calls, apart from ...
    serving_cost_usd: float     # ... the traffic served
    learning_calls: int
    learning_share_of_spend: float  # learning_cost_usd / serving_cost_usd (0 when nothing was spent serving)


class LearningUsageReport(UsageReport, frozen=True):
    """view=learning: learning's calls grouped as any usage view, and the summary the dashboard draws."""

    learning: LearningSummary | None = None


def summarize(figs: LearningFigures, settings: Settings, rule: dict[str, object] | None) -> LearningSummary:
    """The dashboard's figures; `rule` is the cache's acceptance report (Acceptance.report), None without a
    semantic cache."""
    scored = [j for j in figs.judged if j.score is not None]
    scores = np.array([j.score for j in scored], dtype=float)
    pairs = pair_curves(scored, scores, settings.routing.cutoffs)
    verdicts = {v: sum(j.verdict == v for j in figs.judged) for v in ("served", "reference", "tie")}
    right, wrong, unsure = (figs.hit_checks.get(v, 0) for v in ("right", "wrong", "unsure"))
    n = right + wrong
    cache = CacheFigures(
        checks=n, wrong=wrong, unsure=unsure, near_misses=figs.near_miss_checks,
        wrong_hit_rate=round(wrong / n, 4) if n else None,
        wrong_hit_rate_upper=round(wilson_upper(wrong, n), 4) if n else None,
        bound=settings.cache.max_wrong_hit_rate,
        threshold=_float(rule.get("threshold")) if rule else None,
        source=str(rule.get("source")) if rule else "off",
        rule_checks=_int(rule.get("checks")) if rule else 0,
        rule_rests_on=_int(rule.get("rests_on")) if rule else 0)
    served, spent = figs.serving_cost_usd, figs.learning_cost_usd
    return LearningSummary(
        on=settings.learning.sample_rate > 0, sample_rate=settings.learning.sample_rate,
        auto_requests=figs.auto_requests, judged=len(figs.judged),
        judged_share=round(len(figs.judged) / figs.auto_requests, 4) if figs.auto_requests else 0.0,
        verdicts=verdicts, scored=len(scored), pairs=pairs, cache=cache, learning_cost_usd=money(spent),
        serving_cost_usd=money(served), learning_calls=figs.learning_calls,
        learning_share_of_spend=round(spent / served, 4) if served > 0 else 0.0)


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float) else 0
