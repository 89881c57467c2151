"""Train the embedding classifier's head, choosing regularisation by leave-groups-out validation.

Groups are MMLU subjects and AlpacaEval sub-datasets: every fold holds out whole subjects, so the
numbers say how the router does on subjects it never saw. The target is "the cheap model fails";
prompt length is the baseline to beat on every fold.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from router_core.classifiers.embedding import Head
from router_core.data import Example
from router_core.evals.metrics import apgr, curve

SEED = 20261125
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


def _design(vectors: np.ndarray, chars: np.ndarray, mean: float, std: float) -> np.ndarray:
    length = (np.log1p(chars) - mean) / std
    return np.hstack([vectors, length[:, None]])


def folds(groups: Sequence[str], k: int) -> list[np.ndarray]:
    """Whole groups per fold, assigned round-robin after a seeded shuffle."""
    names = sorted(set(groups))
    rng = np.random.default_rng(SEED)
    rng.shuffle(names)
    index = {g: i % k for i, g in enumerate(names)}
    g = np.array([index[x] for x in groups])
    return [np.where(g == f)[0] for f in range(k)]


def train(examples: list[Example], vectors: np.ndarray, k: int = 5, log: TextIO = sys.stderr) -> tuple[Head, str]:
    from sklearn.linear_model import LogisticRegression

    chars = np.array([len(e.prompt) for e in examples], dtype=float)
    cheap = np.array([e.cheap_ok for e in examples])
    strong = np.array([e.strong_ok for e in examples])
    y = (~cheap).astype(int)
    groups = [e.group for e in examples]
    mean, std = float(np.log1p(chars).mean()), float(np.log1p(chars).std() or 1.0)
    x = _design(vectors, chars, mean, std)
    fold_idx = folds(groups, k)
    results: dict[float, list[tuple[float, float]]] = {}
    for c in C_GRID:
        for held in fold_idx:
            train_mask = np.ones(len(examples), bool)
            train_mask[held] = False
            model = LogisticRegression(C=c, max_iter=3000).fit(x[train_mask], y[train_mask])
            scores = model.predict_proba(x[held])[:, 1]
            results.setdefault(c, []).append((apgr(curve(scores, cheap[held], strong[held])),
                                              apgr(curve(chars[held], cheap[held], strong[held]))))
        print(f"C={c:<5} mean held-out APGR {np.mean([r[0] for r in results[c]]):.3f}", file=log)
    best = max(C_GRID, key=lambda c: np.mean([r[0] for r in results[c]]))
    model = LogisticRegression(C=best, max_iter=3000).fit(x, y)
    lines = [f"leave-groups-out validation, {k} folds of whole subjects, C = {best}:",
             "| fold | held-out groups | prompts | APGR router | APGR prompt length |", "|---|---|---|---|---|"]
    for f, (held, (a, b)) in enumerate(zip(fold_idx, results[best], strict=True)):
        held_groups = sorted({groups[i] for i in held})
        lines.append(f"| {f + 1} | {len(held_groups)} ({', '.join(g.split(':')[-1] for g in held_groups[:3])}, ...) | "
                     f"{len(held)} | {a:.3f} | {b:.3f} |")
    mean_a = float(np.mean([r[0] for r in results[best]]))
    mean_b = float(np.mean([r[1] for r in results[best]]))
    wins = sum(1 for a, b in results[best] if a > b)
    lines.append(f"| mean | | {len(examples)} | {mean_a:.3f} | {mean_b:.3f} |")
    lines.append(f"router beats prompt length on {wins} of {k} folds")
    weights = [*map(float, model.coef_[0])]
    head = Head(weights=weights, bias=float(model.intercept_[0]), length_mean=mean, length_std=std, c=best,
                trained_on=sorted(set(groups)), cv={"apgr": round(mean_a, 4), "apgr_length": round(mean_b, 4),
                                                   "folds": k, "wins": wins})
    return head, "\n".join(lines)


def embed(examples: list[Example], embedder: object, cache: Path | None = None) -> np.ndarray:
    if cache is not None and cache.exists():
        vectors = np.load(cache)
        if len(vectors) == len(examples):
            return vectors
    from sentence_transformers import SentenceTransformer

    model = getattr(embedder, "_model", None)
    assert isinstance(model, SentenceTransformer)
    vectors = np.asarray(model.encode([e.prompt for e in examples], batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=True), dtype=np.float32)
    if cache is not None:
        np.save(cache, vectors)
    return vectors

