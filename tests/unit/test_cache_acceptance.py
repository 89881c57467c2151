"""The semantic cache's learned acceptance rule (gateway.cache.acceptance), on recorded checks from a
simulated paraphrase / near-miss mix.

The mix (`pairs`): a new prompt's nearest cached prompt is
- a paraphrase (the cached answer is right) at cosine 0.84-1.0,
- an unrelated question (wrong) at 0.70-0.86,
- or a near miss (wrong: same words, other answer) at 0.92-0.95, a share `near` of the traffic.
Checks are recorded as the gateway records them: only hits (>= the current threshold) and near misses
(within NEAR_MISS_MARGIN under it) are checked, and the threshold is refreshed after each batch.
"""

from __future__ import annotations

import random

import pytest

from gateway.cache.acceptance import MIN_CHECKS, NEAR_MISS_MARGIN, Acceptance, Check, learned_threshold, wilson_upper

DEFAULT = 0.92


def pairs(rng: random.Random, n: int, near: float) -> list[Check]:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < near:
            out.append(Check(rng.uniform(0.92, 0.95), "wrong"))
        elif r < near + 0.35:
            out.append(Check(rng.uniform(0.70, 0.86), "wrong"))
        else:
            out.append(Check(rng.uniform(0.84, 1.0), "right"))
    return out


def learn(acc: Acceptance, rng: random.Random, requests: int, near: float) -> list[Check]:
    """Traffic in batches of 50: the checked ones are recorded, then the threshold is refreshed."""
    recorded: list[Check] = []
    for _ in range(requests // 50):
        t = acc.threshold
        batch = pairs(rng, 50, near)
        recorded += [Check(c.similarity, c.verdict, t) for c in batch if c.similarity >= t - NEAR_MISS_MARGIN]
        acc.refresh(recorded)
    return recorded


def served(fresh: list[Check], threshold: float) -> tuple[int, float]:
    hits = [c for c in fresh if c.similarity >= threshold]
    return len(hits), sum(c.verdict == "wrong" for c in hits) / max(1, len(hits))


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(0, 188) == pytest.approx(0.0200, abs=2e-4)  # 0 wrong in 188 checks: the bound is 2 %
    assert wilson_upper(5, 100) > 0.05 > wilson_upper(0, 100)
    assert wilson_upper(10, 10) == pytest.approx(1.0)


def test_too_few_checks_keep_the_configured_threshold() -> None:
    few = [Check(0.80, "right")] * (MIN_CHECKS - 1) + [Check(0.99, "unsure")] * 100
    learned = learned_threshold(few, DEFAULT, 0.05)
    assert (learned.threshold, learned.source, learned.checks) == (DEFAULT, "configured", MIN_CHECKS - 1)


def test_the_lowest_threshold_whose_bound_holds() -> None:
    checks = [Check(0.80 + i / 1000, "right") for i in range(200)] + [Check(0.85, "wrong")] * 8
    learned = learned_threshold(checks, DEFAULT, 0.05)
    assert learned.source == "learned"
    assert learned.threshold > 0.85  # the wrong ones sit at 0.85: every threshold at or under it includes them
    assert learned.upper_bound is not None and learned.upper_bound < 0.05


def test_learns_a_lower_threshold_that_serves_more_hits_within_the_bound() -> None:
    rng = random.Random(7)
    acc = Acceptance(DEFAULT, 0.05, learn=True)
    recorded = learn(acc, rng, 3000, near=0.01)
    fresh = pairs(random.Random(8), 5000, near=0.01)
    learned_hits, learned_wrong = served(fresh, acc.threshold)
    default_hits, _ = served(fresh, DEFAULT)
    print(f"near 1%: {len(recorded)} checks, threshold {acc.threshold:.4f} ({acc.current.source}), "
          f"hits {learned_hits} vs {default_hits} at 0.92, wrong {learned_wrong:.4f}")
    assert acc.current.source == "learned" and acc.threshold < DEFAULT
    assert learned_wrong <= 0.05
    assert learned_hits > default_hits * 1.2


def test_raises_the_threshold_when_near_misses_crowd_the_default() -> None:
    rng = random.Random(11)
    acc = Acceptance(DEFAULT, 0.05, learn=True)
    learn(acc, rng, 1500, near=0.08)
    fresh = pairs(random.Random(12), 5000, near=0.08)
    _, default_wrong = served(fresh, DEFAULT)
    hits, wrong = served(fresh, acc.threshold)
    print(f"near 8%: threshold {acc.threshold:.4f} ({acc.current.source}), wrong {wrong:.4f} vs {default_wrong:.4f}")
    assert default_wrong > 0.05  # the fixed default breaks the bound here
    assert acc.threshold > DEFAULT and wrong <= 0.05 and hits > 0


def test_without_proof_the_configured_threshold_stands_until_a_hit_is_wrong() -> None:
    right = [Check(0.93 + i / 10_000, "right") for i in range(60)]  # 60 checks: the bound of 2 % needs 188
    learned = learned_threshold(right, DEFAULT, 0.02)
    assert (learned.threshold, learned.source, learned.wrong_rate) == (DEFAULT, "configured", 0.0)
    closed = learned_threshold([*right, Check(0.95, "wrong")], DEFAULT, 0.02)
    assert (closed.threshold, closed.source, closed.at_or_above) == (1.0, "closed", 61)
    acc = Acceptance(DEFAULT, 0.02, learn=True)
    acc.refresh([*right, Check(0.95, "wrong")])
    assert acc.near_miss(0.96) and not acc.near_miss(0.94)  # closed, near misses are still checked


def test_off_means_the_configured_threshold() -> None:
    acc = Acceptance(DEFAULT, 0.05, learn=False)
    acc.refresh([Check(0.80 + i / 1000, "right") for i in range(200)])
    assert acc.threshold == DEFAULT and acc.report()["source"] == "configured"
    assert acc.near_miss(0.90) and not acc.near_miss(0.86) and not acc.near_miss(0.93)
