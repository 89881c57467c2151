"""Other ways to order prompts inside a source, measured and not shipped (issue 15: "no source below
random"):

    python -m bench.studies.difficulty_alternatives [--data data] [--trees] [--smoke]

- Neighbours (RouteLLM's similarity-weighted ranking, in spirit): a prompt's score is the mean target of
  its k nearest training prompts by cosine on the text vector (chat prompts weighing 4, as in the fit),
  alone or added to the ridge head's score (both z-scored within the held-out source).
- A ceiling: APGR rewards sending a prompt to the strong model only where the strong model then succeeds,
  so a prompt every model fails (gpqa here: the nine models answer 0-24 % of its questions) is no better
  sent strong than cheap. A second ridge head predicts the raw share of models that fail (not z-scored,
  so sources keep their level); where it exceeds c, the score is lowered by lam per 0.1 above c.
- `--trees` (two minutes more): gradient-boosted trees (depth 2-3, 200 rounds) on the named features, with
  the text vector's first 16 principal components or without, alone or added to the ridge head: can
  interactions the linear head cannot express (digits in a graduate science question) order a source?
Evaluated leave-source-out exactly as `smr eval --leave-source-out` (permissive training data, the
shipped head's target, alpha and chat weight). Seconds.
2026-11-30, fifth round (the shipped head: chat 0.566, benchmarks 0.512, 7 below random): neighbours
alone 0.560-0.565 / 0.499-0.515, 5-8 below; added to the head 0.571-0.575 / 0.506-0.515, 5-9 below
(gpqa 0.423-0.443 in all six); the ceiling 0.519-0.567 / 0.512-0.521, 5-7 below: the steepest one
(c=0.6, lam=3) lifts gpqa above 0.5 but drops chat to 0.519 and vicuna below random, and mbpp and
mmlu/other stay below in every ceiling row. Trees: 0.521-0.556 / 0.497-0.508, 8-10 below: they learn what
differs between the training sources and it does not carry. None reaches no source below random.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.studies.outcome_design import parser, rows_and_design
from router_core.difficulty import EXTRA_FEATURES, load_head
from router_lab.difficulty import fit, kind_weights, quality_matrix, targets, trainable
from router_lab.held_out import evaluate, summary

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (held-out rows, training mask) -> scores


def zscore(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / (a.std() + 1e-12)


def main() -> None:
    ap = parser(__doc__ or "")
    ap.add_argument("--trees", action="store_true", help="also gradient-boosted trees (two minutes more)")
    args = ap.parse_args()
    rows, x = rows_and_design(__doc__ or "", args)
    shipped = load_head()
    y = targets(rows, shipped.target)
    sources = np.array([r.source for r in rows])
    kinds = np.array([r.kind for r in rows])
    weight = kind_weights(kinds.tolist(), shipped.chat_weight)
    usable = np.array([trainable(r, True) for r in rows])
    text = x[:, : x.shape[1] - len(EXTRA_FEATURES)]
    unit = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    failed = np.full(len(rows), np.nan)   # the raw share of a source's models that fail each prompt
    for s in sorted(set(sources.tolist())):
        idx = np.flatnonzero(sources == s)
        if rows[idx[0]].proxy is None:
            q, _ = quality_matrix([rows[i] for i in idx])
            failed[idx] = 1 - np.nanmean(q, axis=1)

    def remembered(scorer: Scorer) -> Scorer:
        """Each held-out source is scored once per scorer (its training rows are the same every time)."""
        seen: dict[int, np.ndarray] = {}

        def score(idx: np.ndarray, train: np.ndarray) -> np.ndarray:
            if int(idx[0]) not in seen:
                seen[int(idx[0])] = scorer(idx, train)
            return seen[int(idx[0])]
        return score

    def ridge(target: np.ndarray) -> Scorer:
        def score(idx: np.ndarray, train: np.ndarray) -> np.ndarray:
            train = train & ~np.isnan(target)
            w, b = fit(x[train], target[train], shipped.alpha, 0.0, weight[train])
            return x[idx] @ w + b
        return remembered(score)

    most = 200   # the largest k: each source's nearest training prompts are found once, in order

    @remembered
    def nearest(idx: np.ndarray, train: np.ndarray) -> np.ndarray:
        pool = np.flatnonzero(train)
        sim = unit[idx] @ unit[pool].T
        top = np.argpartition(-sim, most, axis=1)[:, :most]
        return pool[np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), axis=1), 1)]

    def neighbours(k: int) -> Scorer:
        def score(idx: np.ndarray, train: np.ndarray) -> np.ndarray:
            near = nearest(idx, train)[:, :k]
            return (weight[near] * y[near]).sum(axis=1) / weight[near].sum(axis=1)
        return score

    head, share = ridge(y), ridge(failed)

    def trees(cols: np.ndarray, depth: int) -> Scorer:
        from sklearn.ensemble import HistGradientBoostingRegressor

        def score(idx: np.ndarray, train: np.ndarray) -> np.ndarray:
            m = HistGradientBoostingRegressor(max_depth=depth, max_iter=200, learning_rate=0.05, min_samples_leaf=100,
                                              l2_regularization=1.0, random_state=0)
            return np.asarray(m.fit(cols[train], y[train], sample_weight=weight[train]).predict(cols[idx]))
        return score

    def plus_head(other: Scorer) -> Scorer:
        return lambda idx, train: zscore(head(idx, train)) + zscore(other(idx, train))

    def with_neighbours(k: int, lam: float) -> Scorer:
        near = neighbours(k)
        return lambda idx, train: zscore(head(idx, train)) + lam * zscore(near(idx, train))

    def with_ceiling(c: float, lam: float) -> Scorer:
        return lambda idx, train: zscore(head(idx, train)) - lam * np.maximum(0.0, share(idx, train) - c) / 0.1

    variants: list[tuple[str, str, Scorer]] = [("the shipped head", "", head)]
    for k in (10, 50, most):
        variants.append(("neighbours", f"k={k}", neighbours(k)))
        variants += [("head + neighbours", f"k={k}, weight {lam}", with_neighbours(k, lam)) for lam in (0.5, 1.0)]
    for c in (0.6, 0.7, 0.8):
        variants += [("head with a ceiling", f"c={c}, lam={lam}", with_ceiling(c, lam)) for lam in (1.0, 3.0)]
    if args.trees:
        from sklearn.decomposition import PCA

        named = x[:, text.shape[1]:]
        with_pcs = np.hstack([named, PCA(16, random_state=0).fit_transform(text)])
        variants += [("trees", "named features, depth 3", trees(named, 3)),
                     ("trees", "named features and 16 PCs, depth 3", trees(with_pcs, 3)),
                     ("head + trees", "named features and 16 PCs, depth 3", plus_head(trees(with_pcs, 3))),
                     ("head + trees", "named features, depth 2", plus_head(trees(named, 2)))]

    print("| variant | setting | APGR chat | APGR bench | worst source | sources below random | which |")
    print("|---|---|---|---|---|---|---|")
    for label, setting, scorer in variants:
        held = []
        for s in sorted(set(sources.tolist())):
            idx = np.flatnonzero(sources == s)
            held.append(evaluate([rows[i] for i in idx], scorer(idx, usable & (sources != s))))
        s_ = summary(held)
        scored = [(h.source, h.apgr) for h in held if h.apgr is not None]
        below = [f"{source} {a:.3f}" for source, a in scored if a < 0.5]
        print(f"| {label} | {setting} | {s_['apgr_chat']:.3f} | {s_['apgr_bench']:.3f} | {min(a for _, a in scored):.3f} | "
              f"{len(below)} | {', '.join(below)} |", flush=True)


if __name__ == "__main__":
    main()
