"""A task-type gate for the difficulty router, measured and not shipped (issue 15):

    python -m bench.studies.difficulty_gate [--data data]

Two heads, one fitted on chat sources and one on benchmark sources, mixed by a logistic gate that
predicts chat vs benchmark from the same features, then averaged with the pooled head; evaluated
leave-source-out exactly as `smr eval --leave-source-out` (permissive training data, the shipped head's
target and chat weight).
2026-11-30, first round's features, share target: chat 0.537, benchmarks 0.509, 7 sources below random
(the head then: 0.535, 0.513, 7). Third round (share+gap, chat weight 4, alpha 30 / 100): chat
0.557 / 0.557, benchmarks 0.509 / 0.507, 8 / 9 below random (the shipped head: 0.566, 0.512, 7): worse.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.studies.outcome_design import rows_and_design
from router_core.difficulty import load_head
from router_lab.difficulty import fit, kind_weights, targets, trainable
from router_lab.held_out import evaluate, summary


def main() -> None:
    rows, x = rows_and_design(__doc__ or "")
    shipped = load_head()
    y = targets(rows, shipped.target)
    sources = np.array([r.source for r in rows])
    kinds = np.array([r.kind for r in rows])
    weight = kind_weights(kinds, shipped.chat_weight)
    usable = np.array([trainable(r, True) for r in rows])
    for alpha in (30.0, 100.0):
        out = []
        for s in sorted(set(sources)):
            held = sources == s
            tr = usable & ~held
            gate = LogisticRegression(C=1.0, max_iter=2000).fit(x[tr], (kinds[tr] == "chat").astype(int))
            heads = {k: fit(x[tr & (kinds == k)], y[tr & (kinds == k)], alpha, 0.0) for k in ("chat", "bench")}
            w_all, b_all = fit(x[tr], y[tr], alpha, 0.0, weight[tr])
            idx = np.where(held)[0]
            p = gate.predict_proba(x[idx])[:, 1]
            gated = (p * (x[idx] @ heads["chat"][0] + heads["chat"][1])
                     + (1 - p) * (x[idx] @ heads["bench"][0] + heads["bench"][1]))
            out.append(evaluate([rows[i] for i in idx], 0.5 * gated + 0.5 * (x[idx] @ w_all + b_all)))
        below = [h.source for h in out if h.apgr is not None and h.apgr < 0.5]
        print(f"alpha {alpha}: {summary(out)}; {len(below)} sources below random: {', '.join(below)}")


if __name__ == "__main__":
    main()
