"""How optimistic is the shipped difficulty head's cross-validated figure? (issue 15)

    python -m bench.studies.difficulty_nested [--data data]

`smr train --difficulty` picks its setting (target, ridge alpha, length boost, chat weight: 32 in all)
on the same leave-source-out figures it reports. Here the choice itself is held out: for each source,
the setting is chosen by the same rule on the other sources only (each of them held out in turn, the
outer source never seen), then that setting's head, fitted without the outer source, is scored on it.
The mean over sources of those scores is an honest estimate of what choosing-then-training gives.
Fits come from per-source sufficient statistics, so the 32 x 231 fits take seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from bench.studies.outcome_design import rows_and_design
from router_core.difficulty import EXTRA_FEATURES
from router_lab.difficulty import kind_weights, targets, trainable
from router_lab.held_out import HeldOut, evaluate, summary
from router_lab.selection import ALPHAS, BOOSTS, CHAT_WEIGHTS, TARGETS, rank


def main() -> None:
    rows, x = rows_and_design(__doc__ or "")
    sources = np.array([r.source for r in rows])
    names = sorted(set(sources.tolist()))
    usable = np.array([trainable(r, True) for r in rows])
    kinds = [r.kind for r in rows]
    index = {s: np.flatnonzero(sources == s) for s in names}
    length_col = x.shape[1] - len(EXTRA_FEATURES) + EXTRA_FEATURES.index("log_chars")
    ys = {t: targets(rows, t) for t in TARGETS}

    def stats(y: np.ndarray, w: np.ndarray) -> dict[str, tuple[float, np.ndarray, float, np.ndarray, np.ndarray]]:
        out = {}
        for s in names:
            i = index[s][usable[index[s]]]
            xi, yi, wi = x[i], y[i], w[i]
            out[s] = (float(wi.sum()), wi @ xi, float(wi @ yi), xi.T @ (xi * wi[:, None]), xi.T @ (wi * yi))
        return out

    def fit_without(st: dict, leave: Sequence[str], alpha: float, boost: float) -> tuple[np.ndarray, float]:
        parts = [v for s, v in st.items() if s not in leave]
        sw = sum(p[0] for p in parts)
        sx, sy = sum(p[1] for p in parts), sum(p[2] for p in parts)
        sxx, sxy = sum(p[3] for p in parts), sum(p[4] for p in parts)
        xm, ym = sx / sw, sy / sw
        a = sxx - sw * np.outer(xm, xm) + alpha * np.eye(x.shape[1])
        w = np.linalg.solve(a, sxy - sw * xm * ym)
        w[length_col] += boost
        return w, float(ym - xm @ w)

    settings = list(itertools.product(TARGETS, ALPHAS, BOOSTS, CHAT_WEIGHTS))
    plain: dict[tuple, dict[str, HeldOut]] = {}
    pairs: dict[tuple, dict[tuple[str, str], HeldOut]] = {}
    for setting in settings:
        target, alpha, boost, chat = setting
        st = stats(ys[target], kind_weights(kinds, chat))
        plain[setting], pairs[setting] = {}, {}
        for s in names:
            w, b = fit_without(st, [s], alpha, boost)
            plain[setting][s] = evaluate([rows[i] for i in index[s]], x[index[s]] @ w + b)
        for s, t in itertools.combinations(names, 2):
            w, b = fit_without(st, [s, t], alpha, boost)
            pairs[setting][(s, t)] = evaluate([rows[i] for i in index[t]], x[index[t]] @ w + b)
            pairs[setting][(t, s)] = evaluate([rows[i] for i in index[s]], x[index[s]] @ w + b)
        print(f"{setting}: {summary(list(plain[setting].values()))}", flush=True)
    outer, chosen = [], {}
    for s in names:
        inner = {st: summary([pairs[st][(s, t)] for t in names if t != s]) for st in settings}
        best = max(settings, key=lambda st: rank(inner[st]))
        chosen[s] = best
        outer.append(plain[best][s])
    flat = max(settings, key=lambda st: rank(summary(list(plain[st].values()))))
    print(f"\nchosen on all sources (what smr train reports): {flat}: {summary(list(plain[flat].values()))}")
    print(f"chosen without each held-out source (nested): {summary(outer)}")
    print("settings chosen per outer source: " + ", ".join(sorted({str(v) for v in chosen.values()})))
    below = [f"{h.source} {h.apgr:.3f}" for h in outer if h.apgr is not None and h.apgr < 0.5]
    print(f"{len(below)} sources below random (nested): {', '.join(below)}")


if __name__ == "__main__":
    main()
