"""Learning from ratings (`smr train --from-logs`), pure: labels from rated requests, and a head (the
difficulty head or the embedding head) refitted on them as a correction to the current head (so a few
hundred ratings nudge it rather than replace it). The refitted head drops the cross-validated figures of
the head it started from: they described that head.

Label: 1 = "needed a stronger model than it got" (a bad rating), 0 = "the cheap tier was enough" (a good
rating on simple or medium). A good rating on the complex tier says nothing about a cheaper one: skipped.
"""

from __future__ import annotations

import msgspec
import numpy as np

from router_core.classifiers.embedding import Head
from router_core.difficulty import DifficultyHead, difficulty_logits


def label(tier: str | None, rating: int) -> int | None:
    if rating < 0:
        return 1
    if rating > 0 and tier in ("simple", "medium"):
        return 0
    return None


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); 0.5 when one class is missing."""
    pos, neg = scores[y == 1], scores[y == 0]
    if not len(pos) or not len(neg):
        return 0.5
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def correction(base: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """A linear correction (dw, db) to logits `base` fitted on rows `x` and labels `y`: logistic loss with
    an L2 penalty on dw, so the current head is the prior."""
    from scipy.optimize import minimize

    n, d = x.shape

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        dw, db = theta[:d], theta[d]
        z = base + x @ dw + db
        p = 1 / (1 + np.exp(-np.clip(z, -60, 60)))
        nll = np.sum(np.logaddexp(0, z) - y * z) / n + l2 * float(dw @ dw) / (2 * n)
        g = p - y
        return nll, np.concatenate([x.T @ g / n + l2 * dw / n, [g.mean()]])

    fit = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return fit.x[:d], float(fit.x[d])


def refit(head: Head, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> Head:
    """The embedding head plus a correction fitted on `x` (rows of head.design) and labels `y`."""
    dw, db = correction(head.logits(x), x, y, l2)
    return msgspec.structs.replace(head, weights=(np.asarray(head.weights) + dw).tolist(), bias=head.bias + db,
                                   trained_on=[*head.trained_on, f"feedback:{len(y)}"], cv={})


def refit_difficulty(head: DifficultyHead, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> DifficultyHead:
    """The difficulty head plus a correction fitted on `x` (rows of `DifficultyClassifier.design`) and labels
    `y`, in the score's logit space (scale * (x.w + bias) + shift); the logistic map is kept, so the
    configured cut-offs keep their meaning."""
    w0 = np.asarray(head.weights, dtype=float)
    dw, db = correction(difficulty_logits(head, x), x, y, l2)
    return msgspec.structs.replace(head, weights=(w0 + dw / head.scale).tolist(), bias=head.bias + db / head.scale,
                                   trained_on=[*head.trained_on, f"feedback:{len(y)}"], cv={})
