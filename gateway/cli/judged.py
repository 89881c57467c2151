"""`smr eval --from-logs`, `smr calibrate --from-logs --target-quality Q` and `smr train --from-judgements`:
the router tuned on stored judgements (gateway.learning: sampled answers compared with the reference tier's).

For each tier pair (the tier that served, the reference tier) the judged traffic gives a quality/cost
curve: sending the requests the router scores highest to the reference tier, the share of the reference's
quality kept against the share of calls left on the cheaper tier. A served answer's quality is 0 where the
judge preferred the reference's, else 1; the reference's is 0 where the judge preferred the served one.
APGR (average performance gap recovered) is the curve's mean height above the cheap tier's quality, as a
share of the gap to the reference's: 0.5 for a router that cannot tell, 1 for one that sends exactly the
requests that need it first (the pure part is gateway/learning/curve.py, which the dashboard draws from
too). The scores are the configured router's (the pipeline as the gateway runs
it), so a head refitted on judgements (`smr train --from-judgements --write H`, then routing.difficulty_head
= H) shows here. Calibration fits on one half of the judgements (by request id) and reports the quality on
the other, then writes the cut-offs fitted on all of them.

`smr eval --from-logs`, `smr calibrate --from-logs --target-quality Q` and `smr train --from-judgements`
(gateway.cli.router) call these.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from gateway.cli.admin import with_pool
from gateway.cli.from_logs import _window, offline_settings
from gateway.cli.scoring import decide_all, write_cutoffs
from gateway.learning.curve import cutoff_for_quality, pair_curves, qualities, quality_at
from gateway.learning.store import Judgement, JudgementStore
from gateway.vocab.prompt_log import conversation_of
from gateway.vocab.settings import Settings


class Pair(msgspec.Struct, frozen=True):
    """One tier pair's judged traffic: scores, and each request's quality on either tier."""

    tier: str
    reference: str
    scores: np.ndarray
    weak: np.ndarray    # the served (cheaper) tier's answer: 1 good enough, 0 the reference's was better
    strong: np.ndarray  # the reference's answer: 0 where the served one was better
    ids: list[str]


def pairs(js: list[Judgement], scores: np.ndarray) -> list[Pair]:
    out = []
    for key in sorted({(j.tier, j.reference_tier) for j in js}):
        idx = [i for i, j in enumerate(js) if (j.tier, j.reference_tier) == key]
        weak, strong = qualities([js[i] for i in idx])
        out.append(Pair(key[0], key[1], scores[idx], weak, strong, [js[i].request_id for i in idx]))
    return out


def _read(settings: Settings, args: argparse.Namespace) -> list[Judgement]:
    since, until = _window(args)

    async def fetch(pool: Any) -> list[Judgement]:
        return await JudgementStore(pool).window(since, until, args.tenant)

    return [j for j in asyncio.run(with_pool(settings, fetch)) if j.prompt]


def _scored(args: argparse.Namespace, need: int = 20) -> tuple[Settings, list[Judgement], np.ndarray] | None:
    settings = offline_settings(args.config)
    js = _read(settings, args)
    if len(js) < need:
        print(f"only {len(js)} judgements in this window: need at least {need} (learning.sample_rate > 0, and "
              "traffic on `auto`)", file=sys.stderr)
        return None
    decisions = decide_all([conversation_of(j.prompt or "") for j in js], settings)
    return settings, js, np.array([d.score for d in decisions], dtype=float)


def eval_from_logs(args: argparse.Namespace) -> int:
    found = _scored(args, need=1)
    if found is None:
        return 2
    settings, js, scores = found
    result = []
    for pc in pair_curves(js, scores, settings.routing.cutoffs):
        points = {f"{pt.reference_share:.1f}": pt.quality for pt in pc.points}
        row = {"pair": pc.pair, "judged": pc.judged, "apgr": pc.apgr, "cheap_quality": pc.cheap_quality,
               "quality_at_cutoff": pc.quality_at_cutoff, "reference_share_at_cutoff": pc.reference_share_at_cutoff,
               "cutoff": pc.cutoff, "curve": points}
        result.append(row)
        tier, reference = pc.pair.split("->")
        print(f"{pc.pair}: {pc.judged} judged, APGR {pc.apgr:.3f}; all on {tier}: quality {pc.cheap_quality:.1%}; "
              f"at cut-off {pc.cutoff}: quality {pc.quality_at_cutoff:.1%} with {pc.reference_share_at_cutoff:.1%} "
              f"of calls on {reference}")
        print("  quality kept by share of calls on the reference: " +
              "  ".join(f"{float(k):.0%}:{v:.1%}" for k, v in points.items()))
    if args.json:
        print(json.dumps({"judgements": len(js), "pairs": result}))
    return 0


def calibrate_from_judgements(args: argparse.Namespace) -> int:
    if not 0 < args.target_quality <= 1:
        print("--target-quality is a share of the reference's quality, e.g. 0.95", file=sys.stderr)
        return 2
    found = _scored(args)
    if found is None:
        return 2
    from router_lab.calibrate import held_out

    settings, js, scores = found
    test = held_out([j.request_id for j in js])
    cuts: dict[str, float] = {}
    result: dict[str, Any] = {"judgements": len(js), "target_quality": args.target_quality, "pairs": []}
    held = {j.request_id for j, h in zip(js, test, strict=True) if h}
    for p in pairs(js, scores):
        t = np.array([i in held for i in p.ids], dtype=bool)
        if t.all() or not t.any():
            continue
        half = cutoff_for_quality(p.scores[~t], p.weak[~t], p.strong[~t], args.target_quality)
        fq, fu = quality_at(p.scores[~t], p.weak[~t], p.strong[~t], half)
        hq, hu = quality_at(p.scores[t], p.weak[t], p.strong[t], half)
        # What is written is fitted on every judgement: the halves say what to expect on unseen traffic.
        cut = cuts[p.tier] = cutoff_for_quality(p.scores, p.weak, p.strong, args.target_quality)
        result["pairs"].append({"pair": f"{p.tier}->{p.reference}", "cutoff": cut, "half_cutoff": half,
                                "fitted": int((~t).sum()), "held_out": int(t.sum()), "fitted_quality": round(fq, 4),
                                "held_out_quality": round(hq, 4), "held_out_reference_share": round(hu, 4)})
        print(f"{p.tier}->{p.reference}: fitted on one half, cut-off {half}: quality {fq:.1%} there ({fu:.1%} on "
              f"{p.reference}), {hq:.1%} on the held-out half ({hu:.1%} on {p.reference}); on all: cut-off {cut}")
    if not cuts:
        print("no tier pair has judgements in both halves", file=sys.stderr)
        return 2
    current = settings.routing.cutoffs
    hi = cuts.get("medium", cuts.get("simple", current[1]))
    lo = min(cuts.get("simple", current[0]), hi)
    result["cutoffs"] = [lo, hi]
    print(f"cutoffs = [{lo}, {hi}]  (target quality {args.target_quality:.1%} of the reference's)")
    if args.json:
        print(json.dumps(result))
    if args.write:
        write_cutoffs(Path(args.write), (lo, hi))
    return 0


def train_from_judgements(args: argparse.Namespace) -> int:
    """Refit the configured classifier's head on judgements (label 1: the reference's answer was better),
    as `smr train --from-logs` does on ratings; print the held-out AUC before and after."""
    from gateway.cli.from_logs import refit_and_report, trainable_head
    from router_lab.calibrate import held_out

    settings = offline_settings(args.config)
    name = trainable_head(settings, args, "smr train --from-judgements")
    if name is None:
        return 2
    js = _read(settings, args)
    ys = np.array([1.0 if j.verdict == "reference" else 0.0 for j in js])
    test = held_out([j.request_id for j in js])
    if len(js) < 20 or len(set(ys[~test])) < 2 or len(set(ys[test])) < 2:
        print(f"{len(js)} judgements: need at least 20, with both verdicts in both halves", file=sys.stderr)
        return 2
    return refit_and_report(settings, args, name, [j.prompt or "" for j in js], ys, test, "judgements",
                            "where the reference was better")
