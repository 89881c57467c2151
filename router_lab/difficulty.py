"""Fitting the difficulty head (`router_core.difficulty.DifficultyHead`) on many models' outcomes on
15,499 prompts of five kinds of traffic (`router_lab.outcomes`).

Targets, per source and z-scored within it so sources share one scale: an item-response fit of every
model's outcome on every prompt (`irt.rasch`: each prompt's difficulty), the share of models that
failed, the gap between the stronger and the weaker third of the source's models, or the mean of the
last two (GSM8K, which has no model outcomes, uses its solutions' number of calculation steps).
Features: `prompt_inputs` (the static embedding and the named features of `router_core.token_features`),
clipped to the training range (`scaling`). Head: weighted ridge regression (chat prompts may weigh more),
plus a boost of the length weight (shrinkage towards the length baseline). The score is the prediction
through a logistic map fitted so the configured cut-offs split the training prompts 50 / 30 / 20.
How well it does on sources it never saw: `router_lab.held_out`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from router_core.difficulty import EXTRA_FEATURES, SOURCE_MARKS, DifficultyHead, LengthRank, Scaling
from router_core.static_embed import StaticEmbedder
from router_core.token_features import FLAGS, TokenFeatures
from router_lab.irt import rasch, zscore
from router_lab.outcomes import NON_COMMERCIAL, Outcomes

# Kinds of traffic ranked by length within the kind (`router_core.kinds`), and the points of each table.
LENGTH_RANKED = ("multiple_choice", "maths", "code")
TABLE_POINTS = 41
SHARES = (0.5, 0.3, 0.2)


def prompt_inputs(texts: Sequence[str], embedder: StaticEmbedder | None = None,
                  turns: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The static embedding and the named features (EXTRA_FEATURES) of each text, from one tokenizing."""
    e = embedder or StaticEmbedder()
    tokens = e.tokenize(texts)
    return e.pool(tokens), TokenFeatures(e.tokenizer).compute(texts, tokens, turns)


def scaling(extra: np.ndarray) -> Scaling:
    lo, hi = np.percentile(extra, 0.5, axis=0), np.percentile(extra, 99.5, axis=0)
    clipped = np.clip(extra, lo, hi)
    mean, std = clipped.mean(axis=0), clipped.std(axis=0)
    std[[i for i, f in enumerate(EXTRA_FEATURES) if f in FLAGS]] = 0.5
    std[std < 1e-9] = 1.0   # constant in training: its centred column is zero, so ridge gives it no weight
    marks = [EXTRA_FEATURES.index(f) for f in SOURCE_MARKS]
    lo[marks] = hi[marks] = mean[marks] = 0.0   # always zero in the design: no weight, no say
    std[marks] = 1.0
    return Scaling(mean.tolist(), std.tolist(), lo.tolist(), hi.tolist())


def length_tables(texts: Sequence[str], pred: np.ndarray) -> dict[str, LengthRank]:
    """Per length-ranked kind, the table from training prompts of that kind and the head's predictions."""
    from router_core.kinds import traffic_kind

    kinds = np.array([traffic_kind(t) for t in texts])
    loglen = np.log1p(np.array([len(t) for t in texts], dtype=float))
    points = np.linspace(0, 1, TABLE_POINTS)
    out = {}
    for kind in LENGTH_RANKED:
        m = kinds == kind
        if m.sum() >= 20:
            out[kind] = LengthRank(np.quantile(loglen[m], points).tolist(), np.quantile(pred[m], points).tolist())
    return out


# ----------------------------------------------------------------------------- targets
def quality_matrix(rows: Sequence[Outcomes]) -> tuple[np.ndarray, list[str]]:
    models = sorted({m for r in rows for m in r.quality})
    q = np.full((len(rows), len(models)), np.nan)
    index = {m: i for i, m in enumerate(models)}
    for i, r in enumerate(rows):
        for m, v in r.quality.items():
            q[i, index[m]] = v
    return q, models


def source_target(rows: Sequence[Outcomes], kind: str = "rasch") -> np.ndarray:
    """One source's difficulty per prompt, z-scored: `rasch` (item-response difficulty), `share`
    (1 - the models' mean quality), `gap` (the stronger third of its models' mean quality minus the
    weaker third's: what a cheap/strong pair loses by sending the prompt cheap) or `share+gap` (their mean)."""
    if rows[0].proxy is not None:
        return zscore(np.array([r.proxy or 0.0 for r in rows]))
    q, _ = quality_matrix(rows)
    if kind == "rasch":
        b, _ = rasch(q)
        return zscore(b)
    share = zscore(1 - np.nanmean(q, axis=1))
    if kind == "share":
        return share
    order = np.argsort(np.nanmean(q, axis=0))
    third = max(1, len(order) // 3)
    gap = zscore(np.nan_to_num(np.nanmean(q[:, order[-third:]], axis=1) - np.nanmean(q[:, order[:third]], axis=1)))
    return gap if kind == "gap" else 0.5 * share + 0.5 * gap


def targets(rows: Sequence[Outcomes], kind: str = "rasch") -> np.ndarray:
    y = np.zeros(len(rows))
    for source in sorted({r.source for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.source == source]
        y[idx] = source_target([rows[i] for i in idx], kind)
    return y


# ----------------------------------------------------------------------------- fitting
def design(extra: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, Scaling]:
    s = scaling(extra)
    return np.hstack([vectors, s.apply(extra)]), s


def kind_weights(kinds: Sequence[str], chat_weight: float) -> np.ndarray:
    """Each chat prompt weighs `chat_weight` in the fit, each benchmark prompt 1 (chat, the main traffic,
    is a small part of the training prompts)."""
    return np.where(np.asarray(kinds) == "chat", chat_weight, 1.0)


def fit(x: np.ndarray, y: np.ndarray, alpha: float, boost: float,
        weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(Weighted) ridge weights and bias, then the length weight boosted (x's log_chars column is
    standardised)."""
    sw = np.ones(len(y)) if weights is None else weights
    xm, ym = (sw @ x) / sw.sum(), float(sw @ y / sw.sum())
    xc = x - xm
    w = np.linalg.solve(xc.T @ (xc * sw[:, None]) + alpha * np.eye(x.shape[1]), xc.T @ (sw * (y - ym)))
    w[x.shape[1] - len(EXTRA_FEATURES) + EXTRA_FEATURES.index("log_chars")] += boost
    return w, float(ym - xm @ w)


def logistic_map(pred: np.ndarray, cutoffs: Sequence[float], shares: Sequence[float] = SHARES) -> tuple[float, float]:
    """(scale, shift) so that sigmoid(scale * pred + shift) puts shares[0] of `pred` below cutoffs[0] and
    shares[0] + shares[1] below cutoffs[1]."""
    q1, q2 = np.quantile(pred, shares[0]), np.quantile(pred, shares[0] + shares[1])
    l1, l2 = (math.log(c / (1 - c)) for c in cutoffs)
    scale = (l2 - l1) / (q2 - q1) if q2 > q1 else 1.0
    return float(scale), float(l1 - scale * q1)


def trainable(r: Outcomes, permissive_only: bool) -> bool:
    return not (permissive_only and r.licence == NON_COMMERCIAL)


def train_head(rows: Sequence[Outcomes], vectors: np.ndarray, extra: np.ndarray, alpha: float, boost: float,
               target: str, cutoffs: Sequence[float], permissive_only: bool = True,
               chat_weight: float = 1.0, embedding: str = "static") -> DifficultyHead:
    usable = np.array([trainable(r, permissive_only) for r in rows])
    kept = [r for r, u in zip(rows, usable, strict=True) if u]
    x, features = design(extra[usable], vectors[usable])
    weights = kind_weights([r.kind for r in kept], chat_weight)
    w, b = fit(x, targets(kept, target), alpha, boost, weights)
    scale, shift = logistic_map(x @ w + b, cutoffs)
    tables = length_tables([r.prompt for r in kept], x @ w + b)
    return DifficultyHead(length_ranked=tables, weights=w.tolist(), bias=b, feature_names=list(EXTRA_FEATURES),
                          scaling=features,
                          scale=scale, shift=shift, alpha=alpha, length_boost=boost,
                          chat_weight=chat_weight, embedding=embedding,
                          target=target, trained_on=sorted({r.source for r in kept}),
                          licences=sorted({r.licence for r in kept}))
