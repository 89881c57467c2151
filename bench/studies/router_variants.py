"""Head variants tried against "beat prompt length on every held-out set", on the folds `smr train`
uses (3 repeats x 5 folds of whole subjects, 35 held-out sets) and with the same length boosts.

    python -m bench.studies.router_variants data/routellm_mmlu_train data/alpaca_eval_mixtral \\
        [--cache-embeddings emb.npy]

For each variant and boost: held-out sets where the router beats prompt length, mean APGR over the
35 sets, and the worst margin (router minus length) of any set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from router_core.embedder import Embedder
from router_core.features import STRUCTURE_FEATURES
from router_lab.data import Example, load
from router_lab.evals.metrics import apgr, curve
from router_lab.train import LENGTH_BOOST_GRID, REPEATS, SEED, design, embed, folds, held_out_sets

Fit = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (training mask, held-out rows) -> decision values


def variants(x: np.ndarray, y: np.ndarray, groups: np.ndarray, dim: int) -> dict[str, Fit]:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    def lr(train: np.ndarray, held: np.ndarray, data: np.ndarray = x, weight: np.ndarray | None = None,
           fit_on: np.ndarray | None = None) -> np.ndarray:
        rows = (data if fit_on is None else fit_on)[train]
        model = LogisticRegression(C=1.0, max_iter=3000).fit(rows, y[train], sample_weight=
                                                             None if weight is None else weight[train])
        return np.asarray(model.decision_function(data[held]))

    counts = {g: int((groups == g).sum()) for g in set(groups)}
    per_subject = np.array([len(y) / len(counts) / counts[g] for g in groups])

    def centred(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        # Fitted on embeddings centred within each training subject: what varies inside a subject,
        # not which subject it is (applied to the raw embeddings).
        fit_on = x.copy()
        for g in set(groups[train]):
            rows = np.where(train & (groups == g))[0]
            fit_on[rows, :dim] -= x[rows, :dim].mean(axis=0)
        return lr(train, held, fit_on=fit_on)

    def pca16(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        p = PCA(min(16, dim), random_state=0).fit(x[train, :dim])
        return lr(train, held, data=np.hstack([p.transform(x[:, :dim]) / np.sqrt(p.explained_variance_),
                                               x[:, dim:]]))

    def with_boosting(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        gb = HistGradientBoostingClassifier(max_depth=2, learning_rate=0.05, max_iter=150, min_samples_leaf=80,
                                            random_state=0).fit(x[train, dim:], y[train])
        p = np.clip(gb.predict_proba(x[held, dim:])[:, 1], 1e-6, 1 - 1e-6)
        return 0.5 * lr(train, held) + 0.5 * np.log(p / (1 - p))

    return {"shipped head (logistic, C = 1)": lr,
            "each subject weighted equally": lambda t, h: lr(t, h, weight=per_subject),
            "embedding centred within subjects": centred,
            "PCA of the embedding to 16 dimensions": pca16,
            "head + gradient boosting on the structure features": with_boosting}


def table(examples: list[Example], vectors: np.ndarray, k: int = 5) -> list[str]:
    """One markdown row per variant and length boost."""
    x, _, _ = design(examples, vectors)
    cheap = np.array([e.cheap_ok for e in examples])
    strong = np.array([e.strong_ok for e in examples])
    y = (strong & ~cheap).astype(int)
    groups = np.array([e.group for e in examples])
    length_col = vectors.shape[1] + STRUCTURE_FEATURES.index("log_chars")
    chars = np.array([len(e.prompt) for e in examples], dtype=float)
    sets = held_out_sets(list(groups), k)
    length = np.array([apgr(curve(chars[h.rows], cheap[h.rows], strong[h.rows])) for h in sets])
    lines = [f"{len(examples)} prompts, {len(sets)} held-out sets; prompt length's mean APGR {length.mean():.3f}", "",
             "| variant | length boost | sets ahead of length | mean APGR | worst margin |", "|---|---|---|---|---|"]
    for name, fit in variants(x, y, groups, vectors.shape[1]).items():
        z = np.zeros((REPEATS, len(y)))
        for r in range(REPEATS):
            for held in folds(list(groups), k, SEED + r):
                train = np.ones(len(y), bool)
                train[held] = False
                z[r, held] = fit(train, held)
        for boost in LENGTH_BOOST_GRID:
            s = z + boost * x[:, length_col]
            router = np.array([apgr(curve(s[h.repeat, h.rows], cheap[h.rows], strong[h.rows])) for h in sets])
            lines.append(f"| {name} | {boost} | {int((router > length).sum())}/{len(sets)} | {router.mean():.3f} | "
                         f"{(router - length).min():+.3f} |")
        print(f"{name}: done", file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.studies.router_variants")
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--cache-embeddings", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)
    examples = load(args.data)
    print("\n".join(table(examples, embed(examples, Embedder().load(), args.cache_embeddings), args.folds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
