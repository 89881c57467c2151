"""The semantic cache's learned acceptance rule: the similarity a candidate needs, from checked hits.

Sampled semantic hits (and near misses, just under the threshold) are checked off the request path
(gateway.learning): was the cached answer right for the new prompt? `learned_threshold` (pure) turns
those checks into a cosine threshold, the simplest honest version of vCache's rule: the LOWEST
threshold t such that, among the checks at similarity >= t (at least `min_checks` of them), the upper
Wilson 95% bound on the share judged wrong stays under `max_wrong` (`cache.max_wrong_hit_rate`).
Checks judged 'unsure' count for neither side.

Each check keeps the threshold in force when it was made. Only candidates at or above
`threshold - NEAR_MISS_MARGIN` were checked then, so a check counts towards a threshold t only when its
window reached down to t: otherwise the similarities just above the current threshold, checked in every
window, would outweigh the lower ones, checked only while the threshold was low (a biased estimate).

- Fewer than `min_checks` checks in all: the configured `cache.similarity` stands.
- Enough checks but no threshold proves the bound yet: the configured threshold stands while no check
  at or above it was judged wrong (too little evidence either way); once one was, the semantic cache
  closes (threshold 1.0: no semantic hits) until the checks prove a threshold. Near misses are still
  checked meanwhile (similarity in [0.95, 1.0)), so a threshold can be proved and the cache reopen.

`Acceptance` holds the current threshold for the request path (a plain attribute read, no I/O); the
learning worker recomputes it from the stored checks every `refresh_s` seconds (gateway.learning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

Z95 = 1.959964
MIN_CHECKS = 50
NEAR_MISS_MARGIN = 0.05  # near misses, in [threshold - margin, threshold), are checked too
CLOSED = 1.0  # no semantic hits (a candidate would need to be the same text, in effect)


class Check(msgspec.Struct, frozen=True):
    similarity: float
    verdict: str  # "right", "wrong" or "unsure"
    threshold: float | None = None  # the threshold in force when it was checked (None: every window)


class Learned(msgspec.Struct, frozen=True):
    threshold: float
    checks: int            # checks judged right or wrong (all similarities)
    wrong_rate: float | None  # measured share wrong among checks at or above `threshold`
    upper_bound: float | None  # its Wilson 95% upper bound
    at_or_above: int       # how many checks that rests on
    source: str            # "configured" (too few checks), "learned", "closed" (wrong hits, bound not proven)


def wilson_upper(wrong: int, n: int, z: float = Z95) -> float:
    """The upper end of the Wilson score interval for a proportion `wrong / n` (1.0 when n is 0)."""
    if n <= 0:
        return 1.0
    p = wrong / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def learned_threshold(checks: Iterable[Check], configured: float, max_wrong: float,
                      min_checks: int = MIN_CHECKS) -> Learned:
    """The acceptance threshold these checks support (see the module docstring). Pure."""
    judged = [c for c in checks if c.verdict in ("right", "wrong")]
    n_all = len(judged)
    if n_all < min_checks:
        return Learned(configured, n_all, None, None, 0, "configured")
    # Sweep thresholds from the top down: a check counts for t in [its window's floor, its similarity].
    enter = sorted(judged, key=lambda c: -c.similarity)
    leave = sorted(judged, key=lambda c: -_floor(c))
    best: tuple[float, int, int] | None = None
    n = wrong = 0
    j = k = 0
    while j < n_all:
        t = enter[j].similarity
        while j < n_all and enter[j].similarity >= t:
            n += 1
            wrong += enter[j].verdict == "wrong"
            j += 1
        while k < n_all and _floor(leave[k]) > t:
            n -= 1
            wrong -= leave[k].verdict == "wrong"
            k += 1
        if n >= min_checks and wilson_upper(wrong, n) < max_wrong:
            best = (t, n, wrong)  # keep going down: the lowest threshold that holds wins
    if best is not None:
        t, n, wrong = best
        return Learned(t, n_all, wrong / n, wilson_upper(wrong, n), n, "learned")
    at_configured = [c.verdict == "wrong" for c in judged if c.similarity >= configured]
    if not any(at_configured):
        return Learned(configured, n_all, 0.0 if at_configured else None,
                       wilson_upper(0, len(at_configured)) if at_configured else None, len(at_configured), "configured")
    return Learned(CLOSED, n_all, sum(at_configured) / len(at_configured),
                   wilson_upper(sum(at_configured), len(at_configured)), len(at_configured), "closed")


def _floor(c: Check) -> float:
    return -1.0 if c.threshold is None else c.threshold - NEAR_MISS_MARGIN


class Acceptance:
    """The threshold the semantic cache uses now: the configured one, or the learned one once refreshed."""

    def __init__(self, configured: float, max_wrong: float, learn: bool, min_checks: int = MIN_CHECKS) -> None:
        self.configured = configured
        self.max_wrong = max_wrong
        self.learn = learn
        self.min_checks = min_checks
        self.current = Learned(configured, 0, None, None, 0, "configured")

    @property
    def threshold(self) -> float:
        return self.current.threshold if self.learn else self.configured

    def near_miss(self, similarity: float) -> bool:
        """Whether a candidate under the threshold is close enough to be checked as a near miss."""
        return self.threshold - NEAR_MISS_MARGIN <= similarity < self.threshold

    def refresh(self, checks: Iterable[Check]) -> Learned:
        self.current = learned_threshold(checks, self.configured, self.max_wrong, self.min_checks)
        return self.current

    def report(self) -> dict[str, object]:
        """What /health shows under cache.acceptance."""
        c = self.current
        return {"learn": self.learn, "threshold": self.threshold, "configured": self.configured,
                "bound": self.max_wrong, "checks": c.checks, "rests_on": c.at_or_above,
                "wrong_hit_rate": None if c.wrong_rate is None else round(c.wrong_rate, 4),
                "wrong_hit_rate_upper": None if c.upper_bound is None else round(c.upper_bound, 4),
                "source": c.source if self.learn else "configured"}
