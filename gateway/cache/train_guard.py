"""Train and measure the semantic-cache guard on labelled question pairs.

    python -m gateway.cache.train_guard --data ../shared/data/qqp_dev/qqp_pairs_dev.jsonl [--write]

Pairs are split 60/40 by a seeded shuffle; the model is fitted on the first part and measured on the
second, on a balanced sample (as many same-question as different-question pairs). A pair is a
cache hit when cosine >= the similarity threshold and (with the guard) the guard accepts it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from gateway.cache.guard import FEATURES, WEIGHTS_PATH, GuardModel, features, hard_reject, save_guard

SEED = 20261125


def load_pairs(path: Path) -> list[tuple[str, str, int]]:
    out = []
    with path.open() as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append((r["text_a"], r["text_b"], int(r["label"])))
    return out


def cosines(pairs: list[tuple[str, str, int]]) -> np.ndarray:
    from router_core.embedder import Embedder

    emb = Embedder().load()
    a = emb.encode_batch([p[0] for p in pairs])
    b = emb.encode_batch([p[1] for p in pairs])
    return np.sum(a * b, axis=1)


def balanced(pairs: list[tuple[str, str, int]], cos: np.ndarray, seed: int) -> tuple[list[int], list[int]]:
    pos = [i for i, p in enumerate(pairs) if p[2] == 1]
    neg = [i for i, p in enumerate(pairs) if p[2] == 0]
    rng = random.Random(seed)
    n = min(len(pos), len(neg))
    return rng.sample(pos, n), rng.sample(neg, n)


def metrics(hits: set[int], pos: list[int], neg: list[int]) -> dict[str, float]:
    tp = sum(1 for i in pos if i in hits)
    fp = sum(1 for i in neg if i in hits)
    precision = tp / (tp + fp) if tp + fp else 1.0
    return {"precision": round(precision, 4), "recall": round(tp / len(pos), 4), "hits": tp + fp,
            "wrong_hits": fp, "pairs": len(pos) + len(neg)}


def fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    model.fit(z[:, 1:], y)
    weights = [float(model.intercept_[0]), *map(float, model.coef_[0])]
    return weights, mean.tolist(), scale.tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.cache.train_guard")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--similarity", type=float, default=0.92, help="cosine threshold of the semantic cache")
    ap.add_argument("--candidate-floor", type=float, default=0.80, help="train only on pairs at least this close")
    ap.add_argument("--target-precision", type=float, default=0.93)
    ap.add_argument("--write", action="store_true", help=f"write {WEIGHTS_PATH.name}")
    args = ap.parse_args(argv)

    pairs = load_pairs(args.data)
    rng = random.Random(SEED)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    cut = int(len(order) * 0.6)
    cache = Path(f"/tmp/smr-guard-cos-{args.data.stat().st_size}.npy")
    if cache.exists():
        cos = np.load(cache)
    else:
        print(f"embedding {len(pairs)} pairs ...", file=sys.stderr)
        cos = cosines(pairs)
        np.save(cache, cos)
    train = [i for i in order[:cut] if cos[i] >= args.candidate_floor]
    test = order[cut:]

    x = np.array([features(pairs[i][0], pairs[i][1], float(cos[i])) for i in train])
    y = np.array([pairs[i][2] for i in train])
    weights, mean, scale = fit(x, y)
    model = GuardModel(weights, 0.5, mean, scale)
    # Pick the lowest probability threshold whose precision on the training candidates, weighted
    # as in a balanced sample, reaches the target.
    n_pos = sum(1 for i in order[:cut] if pairs[i][2] == 1)
    n_neg = cut - n_pos
    probs = []
    for i in train:
        if cos[i] >= args.similarity and not hard_reject(pairs[i][0], pairs[i][1]):  # else rejected anyway
            probs.append((model.probability(pairs[i][0], pairs[i][1], float(cos[i])), pairs[i][2]))
    threshold = 0.99
    for t in np.arange(0.05, 0.99, 0.01):
        tp = sum(1 for p, lab in probs if p >= t and lab == 1)
        fp = sum(1 for p, lab in probs if p >= t and lab == 0) * n_pos / n_neg
        if tp and tp / (tp + fp) >= args.target_precision:
            threshold = float(t)
            break
    model = GuardModel(weights, round(threshold, 2), mean, scale)

    test_pairs = [pairs[i] for i in test]
    test_cos = cos[test]
    pos, neg = balanced(test_pairs, test_cos, SEED)
    plain = {i for i in pos + neg if test_cos[i] >= args.similarity}
    guarded = {i for i in plain if model.same_question(test_pairs[i][0], test_pairs[i][1], float(test_cos[i]))}
    raised = {i for i in pos + neg if test_cos[i] >= 0.97}
    guarded_name = f"cosine >= {args.similarity:.2f} + guard (p >= {model.threshold:.2f}, shipped)"
    report = {
        f"cosine >= {args.similarity:.2f} (no guard)": metrics(plain, pos, neg),
        "cosine >= 0.97 (no guard)": metrics(raised, pos, neg),
        guarded_name: metrics(guarded, pos, neg),
    }
    # The neighbouring operating points, to show the trade-off (not used to choose the threshold).
    for delta in (-0.05, 0.05):
        other = GuardModel(weights, round(threshold + delta, 2), mean, scale)
        hits = {i for i in plain if other.same_question(test_pairs[i][0], test_pairs[i][1], float(test_cos[i]))}
        report[f"cosine >= {args.similarity:.2f} + guard at p >= {other.threshold:.2f}"] = metrics(hits, pos, neg)
    print(f"held-out balanced sample: {len(pos)} same-question + {len(neg)} different-question pairs")
    print("| rule | precision of hits | recall of same-question pairs | hits | wrong hits |")
    print("|---|---|---|---|---|")
    for name, m in report.items():
        print(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['hits']} | {m['wrong_hits']} |")
    print("features:", dict(zip(FEATURES, [round(w, 3) for w in weights], strict=True)), file=sys.stderr)
    if args.write:
        g = report[guarded_name]
        model = GuardModel(
            weights, model.threshold, mean, scale, trained_on=f"{args.data.name} (60% split, seed {SEED})",
            command="python -m gateway.cache.train_guard --data ../shared/data/qqp_dev/qqp_pairs_dev.jsonl --write",
            heldout={"precision": g["precision"], "recall": g["recall"], "similarity": args.similarity})
        save_guard(model)
        print(f"wrote {WEIGHTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
