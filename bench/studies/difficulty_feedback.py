"""What a deployment's own ratings do for a source the shipped head ranks badly (issue 15: "no source below
random"; `smr train --from-logs`).

    python -m bench.studies.difficulty_feedback [--data data] [--smoke]

For each source with model outcomes: the head is fitted without it (leave-source-out, the shipped setting:
share+gap, alpha 100, chat weight 4), as if the source were a new tenant's traffic. Half of the source's
prompts (a fixed shuffle) stand in for rated requests sent to the cheap tier: "bad" where the cheap model
of its first weak/strong pair failed (quality < 0.5), "good" where it did not. The head is refitted on up
to 50 and 200 of those ratings exactly as `smr train --from-logs` does (`refit_difficulty`, L2 1), and
APGR is measured on the other half, before and after. Seconds.
"""

from __future__ import annotations

import numpy as np

from bench.studies.outcome_design import rows_and_design
from router_core.difficulty import DifficultyHead, Scaling, difficulty_logits
from router_lab.difficulty import fit, kind_weights, logistic_map, targets, trainable
from router_lab.feedback import refit_difficulty
from router_lab.held_out import evaluate, model_pairs, summary

RATINGS = (50, 200)
CUTOFFS = (0.35, 0.62)


def main() -> None:
    rows, x = rows_and_design(__doc__ or "")
    y = targets(rows, "share+gap")
    sources = np.array([r.source for r in rows])
    kinds = np.array([r.kind for r in rows])
    usable = np.array([trainable(r, True) for r in rows])
    rng = np.random.default_rng(0)
    unused = Scaling([], [], [], [])  # the rows are already scaled; a refit reads weights, bias and the map
    print("| held-out source | kind | APGR on the other half, before | after 50 ratings | after 200 ratings |")
    print("|---|---|---|---|---|")
    results: dict[str, list] = {"before": [], **{str(n): [] for n in RATINGS}}
    for s in sorted(set(sources.tolist())):
        idx = np.flatnonzero(sources == s)
        if rows[idx[0]].proxy is not None:
            continue  # gsm8k: no model outcomes to rate
        train = usable & (sources != s)
        w, b = fit(x[train], y[train], 100.0, 0.0, kind_weights(kinds[train], 4.0))
        scale, shift = logistic_map(x[train] @ w + b, CUTOFFS)
        head = DifficultyHead(weights=w.tolist(), bias=b, feature_names=[], scaling=unused, scale=scale, shift=shift)
        order = rng.permutation(idx)
        rated, measured = order[: len(order) // 2], order[len(order) // 2:]
        weak = model_pairs([rows[i] for i in idx])[0][0]
        keep = np.array([weak in rows[i].quality for i in rated])
        rated = rated[keep]
        bad = np.array([1.0 if rows[i].quality[weak] < 0.5 else 0.0 for i in rated])
        part = [rows[i] for i in measured]
        cells = [evaluate(part, difficulty_logits(head, x[measured]))]
        for n in RATINGS:
            fitted = refit_difficulty(head, x[rated[:n]], bad[:n], 1.0)
            cells.append(evaluate(part, difficulty_logits(fitted, x[measured])))
        for key, h in zip(results, cells, strict=True):
            results[key].append(h)
        print(f"| {s} | {rows[idx[0]].kind} | " + " | ".join(f"{h.apgr:.3f}" for h in cells) + " |", flush=True)
    for key, held in results.items():
        below = sum(1 for h in held if h.apgr is not None and h.apgr < 0.5)
        print(f"{key:>6}: {summary(held)}, {below} of {len(held)} sources below random")


if __name__ == "__main__":
    main()
