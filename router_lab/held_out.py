"""How the difficulty model does on traffic it never saw (`leave_source_out`): each source is held out
whole, the head fitted on the others (`router_lab.difficulty`); on the held-out source the router's APGR
is averaged over several cheap/strong model pairs (weaker third vs stronger third of its models) and
compared with prompt length's and random routing's (0.5), with a bootstrap interval over its prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from router_lab.difficulty import design, fit, kind_weights, quality_matrix, targets, trainable
from router_lab.evals.metrics import apgr, curve, report
from router_lab.outcomes import Outcomes

CHEAP_COST = (200 * 0.30 + 300 * 2.50) / 1e6   # a typical prompt on Gemini Flash ...
STRONG_COST = (200 * 1.25 + 300 * 10.0) / 1e6  # ... and on Gemini Pro


class HeldOut(msgspec.Struct, frozen=True):
    source: str
    kind: str
    prompts: int
    pairs: int
    apgr: float | None            # router, mean over the cheap/strong pairs
    apgr_length: float | None
    saving_95: float | None       # cost saving at 95 % of the strong model's quality, router
    saving_95_length: float | None
    spearman: float | None = None         # gsm8k: rank correlation with the calculation steps
    spearman_length: float | None = None
    apgr_low: float | None = None         # the router's APGR, 90 % bootstrap interval over the source's prompts
    apgr_high: float | None = None
    margin_draws: list[float] = []        # the router's APGR minus length's, per bootstrap draw

    @property
    def surely_below_random(self) -> bool:
        """Below random by more than resampling the source's prompts explains (its interval under 0.5)."""
        return self.apgr_high is not None and self.apgr_high < 0.5


def model_pairs(rows: Sequence[Outcomes], most: int = 3) -> list[tuple[str, str]]:
    """Cheap/strong pairs: models of the weaker third against models of the stronger third."""
    q, models = quality_matrix(rows)
    order = [models[i] for i in np.argsort(np.nanmean(q, axis=0))]
    third = max(1, len(order) // 3)
    weak, strong = order[:third], order[-third:]
    pick = lambda xs: [xs[int(i)] for i in np.linspace(0, len(xs) - 1, min(most, len(xs)))]  # noqa: E731
    return [(w, s) for w in dict.fromkeys(pick(weak)) for s in dict.fromkeys(pick(strong)) if w != s]


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def bootstrap_apgr(score_sets: Sequence[np.ndarray], cheap: Sequence[np.ndarray], good: Sequence[np.ndarray],
                   keep: Sequence[np.ndarray], resamples: int, seed: int = 0) -> np.ndarray:
    """The pair-averaged APGR of each of `score_sets` (rows) when the source's prompts are drawn again with
    replacement `resamples` times (columns; the same draw for every score set and every pair): how much of
    a source's figure is which prompts it happens to hold. `keep[p]`: the prompts pair p has outcomes for;
    `cheap[p]`/`good[p]`: theirs."""
    rng = np.random.default_rng(seed)
    n = len(score_sets[0])
    position = [np.full(n, -1) for _ in keep]
    for p, k in zip(position, keep, strict=True):
        p[k] = np.arange(len(k))
    out = np.zeros((len(score_sets), resamples))
    for j in range(resamples):
        draw = rng.integers(0, n, n)
        # Per pair: the drawn prompts it has outcomes for, and where those outcomes sit in its arrays.
        drawn = [(draw[at >= 0], at[at >= 0], c, g) for at, c, g in
                 ((pos[draw], c, g) for pos, c, g in zip(position, cheap, good, strict=True))]
        for i, scores in enumerate(score_sets):
            out[i, j] = float(np.mean([apgr(curve(scores[rows], c[at], g[at])) for rows, at, c, g in drawn
                                       if len(rows)]))
    return out


def interval(draws: np.ndarray) -> tuple[float, float]:
    """The 90 % interval (5th to 95th percentile) of bootstrap draws."""
    low, high = np.percentile(draws, [5, 95])
    return float(low), float(high)


def margin_interval(results: Sequence[HeldOut], kind: str) -> tuple[float, float] | None:
    """90 % interval of the mean margin over prompt length across the sources of `kind` (each source's
    draws are independent of the others', so the mean of the k-th draws is one draw of the mean)."""
    draws = [r.margin_draws for r in results if r.kind == kind and r.margin_draws]
    return interval(np.mean(np.array(draws), axis=0)) if draws else None


def evaluate(rows: Sequence[Outcomes], scores: np.ndarray, resamples: int = 0) -> HeldOut:
    """The router's (`scores`) and prompt length's APGR on one source, averaged over its model pairs;
    with `resamples`, also the router's 90 % bootstrap interval and its margin over length per draw."""
    r0 = rows[0]
    length = np.array([len(r.prompt) for r in rows], dtype=float)
    if r0.proxy is not None:
        steps = np.array([r.proxy or 0.0 for r in rows])
        return HeldOut(r0.source, r0.kind, len(rows), 0, None, None, None, None, spearman(scores, steps),
                       spearman(length, steps))
    pairs = model_pairs(rows)
    router, base, save_r, save_l = [], [], [], []
    kept, cheaps, goods = [], [], []
    for weak, strong in pairs:
        keep = np.array([i for i, r in enumerate(rows) if weak in r.quality and strong in r.quality], dtype=int)
        cheap = np.array([rows[i].quality[weak] for i in keep])
        good = np.array([rows[i].quality[strong] for i in keep])
        a = report(scores[keep], cheap, good, CHEAP_COST, STRONG_COST)
        b = report(length[keep], cheap, good, CHEAP_COST, STRONG_COST)
        router.append(a.apgr)
        base.append(b.apgr)
        save_r.append(a.cost_saving_at_95)
        save_l.append(b.cost_saving_at_95)
        kept.append(keep)
        cheaps.append(cheap)
        goods.append(good)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    held = HeldOut(r0.source, r0.kind, len(rows), len(pairs), mean(router), mean(base), mean(save_r), mean(save_l))
    if not (resamples and pairs):
        return held
    draws = bootstrap_apgr([scores, length], cheaps, goods, kept, resamples)
    low, high = interval(draws[0])
    return msgspec.structs.replace(held, apgr_low=low, apgr_high=high, margin_draws=(draws[0] - draws[1]).tolist())


def leave_source_out(rows: Sequence[Outcomes], vectors: np.ndarray, extra: np.ndarray, alpha: float, boost: float,
                     target: str = "rasch", permissive_only: bool = True, chat_weight: float = 1.0,
                     resamples: int = 0) -> list[HeldOut]:
    """Each source held out whole; the head is fitted on the other (trainable) sources (`vectors` and
    `extra`: `prompt_inputs` of the rows' prompts). `resamples`: bootstrap intervals of each source's APGR."""
    x, _ = design(extra, vectors)
    y = targets(rows, target)
    sources = np.array([r.source for r in rows])
    kinds = np.array([r.kind for r in rows])
    usable = np.array([trainable(r, permissive_only) for r in rows])
    out = []
    for source in sorted(set(sources)):
        held = sources == source
        train = usable & ~held
        w, b = fit(x[train], y[train], alpha, boost, kind_weights(kinds[train], chat_weight))
        idx = np.where(held)[0]
        out.append(evaluate([rows[i] for i in idx], x[idx] @ w + b, resamples))
    return out


def summary(results: Sequence[HeldOut]) -> dict[str, float]:
    """Mean APGR (router and length) over the chat and the benchmark sources, and the worst margin over
    random."""
    out: dict[str, float] = {}
    for kind in ("chat", "bench"):
        rs = [r for r in results if r.kind == kind and r.apgr is not None]
        if rs:
            out[f"apgr_{kind}"] = round(float(np.mean([r.apgr for r in rs])), 4)  # type: ignore[misc]
            out[f"apgr_length_{kind}"] = round(float(np.mean([r.apgr_length for r in rs])), 4)  # type: ignore[misc]
    scored = [r.apgr for r in results if r.apgr is not None]
    out["worst_apgr"] = round(min(scored), 4) if scored else 0.0
    return out
