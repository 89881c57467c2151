"""Per-source heads combined, against the pooled head (issue 15: "no source below random").

    python -m bench.studies.difficulty_per_source [--data data] [--smoke]

APGR only sees the order of prompts inside a source, while the pooled fit also learns what differs
between sources. Here each training source gets its own ridge head (fitted on its prompts alone, the
shipped target `share+gap`), and the heads of the sources other than the held-out one are combined:
their mean, their element-wise median (robust to one source's quirks), or their mean with chat sources
weighing 4 (the shipped chat weight). Prints the same summary as `smr eval --leave-source-out` per
setting, and the sources below random. Seconds.
"""

from __future__ import annotations

import numpy as np

from bench.studies.outcome_design import rows_and_design
from router_lab.difficulty import fit, targets, trainable
from router_lab.held_out import evaluate, summary

ALPHAS = (10.0, 100.0, 1000.0)
COMBINE = ("mean", "median", "mean, chat weighs 4")


def main() -> None:
    rows, x = rows_and_design(__doc__ or "")
    y = targets(rows, "share+gap")
    sources = np.array([r.source for r in rows])
    names = sorted(set(sources.tolist()))
    usable = np.array([trainable(r, True) for r in rows])
    kind = {r.source: r.kind for r in rows}
    print("| per-source ridge alpha | combined by | APGR chat | APGR bench | worst source | sources below random |")
    print("|---|---|---|---|---|---|")
    for alpha in ALPHAS:
        heads = {s: fit(x[m], y[m], alpha, 0.0)[0] for s in names if (m := (sources == s) & usable).any()}
        for how in COMBINE:
            held = []
            for s in names:
                others = [t for t in heads if t != s]
                w_all = np.array([heads[t] for t in others])
                if how == "median":
                    w = np.median(w_all, axis=0)
                else:
                    k = np.array([4.0 if how != "mean" and kind[t] == "chat" else 1.0 for t in others])
                    w = (k[:, None] * w_all).sum(axis=0) / k.sum()
                idx = np.flatnonzero(sources == s)
                held.append(evaluate([rows[i] for i in idx], x[idx] @ w))
            s_ = summary(held)
            below = sum(1 for h in held if h.apgr is not None and h.apgr < 0.5)
            print(f"| {alpha} | {how} | {s_.get('apgr_chat', 0):.3f} | {s_.get('apgr_bench', 0):.3f} | "
                  f"{s_['worst_apgr']:.3f} | {below} |", flush=True)


if __name__ == "__main__":
    main()
