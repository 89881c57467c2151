"""Item-response fits, pure numpy: how hard each prompt is, from many models' outcomes at once.

`rasch(q)`: q[prompt, model] in [0, 1] (NaN where a model has no outcome). The model is
P(model m does well on prompt p) = sigmoid(a_p * (theta_m - b_p)), fitted by gradient descent on the
cross-entropy with a small L2 pull towards 0 (a_p = 1 for Rasch; `discrimination=True` fits a_p too,
the 2PL model, kept positive). Returns each prompt's difficulty b_p (higher = harder) and each
model's ability theta_m. Fractional outcomes (win probabilities, grades / 10) enter as soft labels.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def rasch(q: np.ndarray, l2: float = 0.01, steps: int = 400, lr: float = 0.5,
          discrimination: bool = False) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(q, dtype=float)
    seen = ~np.isnan(q)
    y = np.where(seen, q, 0.0)
    n_p, n_m = q.shape
    b = np.zeros(n_p)
    theta = np.zeros(n_m)
    log_a = np.zeros(n_p)
    per_p = np.maximum(seen.sum(axis=1), 1)
    per_m = np.maximum(seen.sum(axis=0), 1)
    for _ in range(steps):
        a = np.exp(log_a)[:, None]
        diff = theta[None, :] - b[:, None]
        err = np.where(seen, _sigmoid(a * diff) - y, 0.0)  # d loss / d logit
        g_theta = (err * a).sum(axis=0) / per_m + l2 * theta
        g_b = -(err * a).sum(axis=1) / per_p + l2 * b
        theta -= lr * g_theta
        b -= lr * g_b
        if discrimination:
            g_log_a = (err * diff * a).sum(axis=1) / per_p + l2 * log_a
            log_a -= lr * g_log_a
        theta -= theta.mean()  # the scale's origin: the mean model
    return b, theta


def zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()
