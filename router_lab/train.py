"""Train the embedding classifier's head, choosing regularisation by leave-groups-out validation.

Groups are MMLU subjects and AlpacaEval sub-datasets: every fold holds out whole subjects, so the
numbers say how the router does on subjects it never saw. The target is "needs the strong model"
(the cheap model fails where the strong one succeeds: the gain APGR counts, unlike "the cheap model
fails", which also rewards sending questions that both models get wrong). Prompt length is the
baseline to beat on every held-out set. Regularisation (C) and a boost of the length weight (a
shrinkage towards the length baseline, which generalises across subjects) are chosen by those
held-out sets, never by the training fit.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

from router_core.classifiers.embedding import Head
from router_core.embedder import Embedder
from router_core.features import STRUCTURE_FEATURES, structure
from router_lab.data import Example
from router_lab.evals.metrics import apgr, curve

SEED = 20261125
REPEATS = 3                        # fold assignments (seeds SEED, SEED+1, ...) the choice is averaged over
C_GRID = (0.1, 0.3, 1.0)
LENGTH_BOOST_GRID = (0.0, 0.25, 0.5, 1.0)


def folds(groups: Sequence[str], k: int, seed: int = SEED) -> list[np.ndarray]:
    """Whole groups per fold, assigned round-robin after a seeded shuffle."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    index = {g: i % k for i, g in enumerate(names)}
    g = np.array([index[x] for x in groups])
    return [np.where(g == f)[0] for f in range(k)]


class HeldOut(NamedTuple):
    repeat: int
    fold: int
    part: str           # the benchmark of the held-out prompts ("mmlu", "alpaca") or "all"
    rows: np.ndarray


def benchmarks(groups: Sequence[str]) -> np.ndarray:
    """The benchmark of each group name ("mmlu:astronomy" -> "mmlu")."""
    return np.array([g.split(":")[0] for g in groups])


def held_out_sets(groups: Sequence[str], k: int, repeats: int = REPEATS, min_size: int = 50) -> list[HeldOut]:
    """Every fold of every repeat, whole and split by benchmark: the router must beat prompt length on
    each one, not only on average."""
    sources = benchmarks(groups)
    out = []
    for r in range(repeats):
        for f, idx in enumerate(folds(groups, k, SEED + r)):
            out.append(HeldOut(r, f, "all", idx))
            parts = sorted(set(sources[idx]))
            if len(parts) > 1:
                out += [HeldOut(r, f, p, idx[sources[idx] == p]) for p in parts
                        if (sources[idx] == p).sum() >= min_size]
    return out


def design(examples: list[Example], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[embedding | standardised structure features], with the features' mean and std."""
    extra = np.array([structure(e.prompt) for e in examples])
    mean, std = extra.mean(axis=0), extra.std(axis=0)
    std[std == 0] = 1.0
    return np.hstack([vectors, (extra - mean) / std]), mean, std


def held_out_logits(x: np.ndarray, y: np.ndarray, groups: Sequence[str], k: int, c: float) -> np.ndarray:
    """Decision values of each prompt from models that never saw its group, one row per repeat."""
    from sklearn.linear_model import LogisticRegression

    z = np.zeros((REPEATS, len(y)))
    for r in range(REPEATS):
        for held in folds(groups, k, SEED + r):
            mask = np.ones(len(y), bool)
            mask[held] = False
            z[r, held] = LogisticRegression(C=c, max_iter=3000).fit(x[mask], y[mask]).decision_function(x[held])
    return z


def summarise(sets: list[HeldOut], router: list[float], length: list[float],
              sources: np.ndarray) -> dict[str, tuple[float, float, int, int]]:
    """Per benchmark and overall: mean router APGR, mean length APGR, sets won, sets. A fold drawn
    from one benchmark only counts for that benchmark too."""
    out = {}
    for part in ["all", *sorted(set(sources))]:
        ids = [i for i, h in enumerate(sets) if h.part == part
               or (part != "all" and h.part == "all" and set(sources[h.rows]) == {part})]
        out[part] = (float(np.mean([router[i] for i in ids])), float(np.mean([length[i] for i in ids])),
                     sum(router[i] > length[i] for i in ids), len(ids))
    return out


def train(examples: list[Example], vectors: np.ndarray, k: int = 5, log: TextIO = sys.stderr) -> tuple[Head, str]:
    """Choose C and the length boost by held-out APGR over REPEATS x k folds of whole groups: first the
    number of held-out sets where the router beats prompt length, then the mean APGR."""
    from sklearn.linear_model import LogisticRegression

    chars = np.array([len(e.prompt) for e in examples], dtype=float)
    cheap = np.array([e.cheap_ok for e in examples])
    strong = np.array([e.strong_ok for e in examples])
    y = (strong & ~cheap).astype(int)
    groups = [e.group for e in examples]
    x, mean, std = design(examples, vectors)
    length_col = vectors.shape[1] + STRUCTURE_FEATURES.index("log_chars")
    sets = held_out_sets(groups, k)
    length = [apgr(curve(chars[h.rows], cheap[h.rows], strong[h.rows])) for h in sets]
    results: dict[tuple[float, float], list[float]] = {}
    for c in C_GRID:
        logits = held_out_logits(x, y, groups, k, c)
        print(f"C={c}: fitted {REPEATS} x {k} folds", file=log, flush=True)
        for boost in LENGTH_BOOST_GRID:
            z = logits + boost * x[:, length_col]
            results[(c, boost)] = [apgr(curve(z[h.repeat, h.rows], cheap[h.rows], strong[h.rows])) for h in sets]
            wins = sum(a > b for a, b in zip(results[(c, boost)], length, strict=True))
            print(f"C={c:<4} length boost {boost:<4}: mean held-out APGR {np.mean(results[(c, boost)]):.3f}, "
                  f"beats prompt length on {wins}/{len(sets)} held-out sets", file=log)

    def rank(key: tuple[float, float]) -> tuple[int, float]:
        return sum(a > b for a, b in zip(results[key], length, strict=True)), float(np.mean(results[key]))

    best = max(results, key=rank)
    wins, mean_apgr = rank(best)
    chosen = results[best]
    model = LogisticRegression(C=best[0], max_iter=3000).fit(x, y)
    weights = [*map(float, model.coef_[0])]
    weights[length_col] += best[1]

    lines = [f"{REPEATS} x {k}-fold cross-validation over whole groups (subjects), C = {best[0]}, length boost = "
             f"{best[1]}; held-out sets are each fold, whole and split by benchmark:",
             "| repeat | fold | held-out part | groups | prompts | APGR router | APGR prompt length |",
             "|---|---|---|---|---|---|---|"]
    for h, a, b in zip(sets, chosen, length, strict=True):
        lines.append(f"| {h.repeat + 1} | {h.fold + 1} | {h.part} | {len({groups[j] for j in h.rows})} | "
                     f"{len(h.rows)} | {a:.3f} | {b:.3f} |")
    summary = summarise(sets, chosen, length, benchmarks(groups))
    for part, (a, b, part_wins, n) in summary.items():
        lines.append(f"| mean | | {part} | | | {a:.3f} | {b:.3f} |  (router ahead on {part_wins}/{n})")
    lines.append(f"router beats prompt length on {wins} of {len(sets)} held-out sets")
    cv = {"apgr": round(summary["all"][0], 4), "apgr_length": round(summary["all"][1], 4), "held_out_sets": len(sets),
          "wins": wins, "folds": k, "repeats": REPEATS, "mean_apgr_all_sets": round(mean_apgr, 4)}
    for part, (a, b, _, _) in summary.items():
        if part != "all":
            cv[f"apgr_{part}"], cv[f"apgr_length_{part}"] = round(a, 4), round(b, 4)
    head = Head(weights=weights, bias=float(model.intercept_[0]), feature_names=list(STRUCTURE_FEATURES),
                feature_mean=mean.tolist(), feature_std=std.tolist(), c=best[0], length_boost=best[1],
                trained_on=sorted(set(groups)), cv=cv)
    return head, "\n".join(lines)


def embed(examples: list[Example], embedder: Embedder, cache: Path | None = None, batch: int = 256,
          log: TextIO = sys.stderr) -> np.ndarray:
    """Embeddings of the examples' prompts (reused from `cache`, an .npy file, when it matches)."""
    if cache is not None and cache.exists():
        vectors = np.load(cache)
        if len(vectors) == len(examples):
            return vectors
    prompts = [e.prompt for e in examples]
    parts = []
    for i in range(0, len(prompts), batch):
        parts.append(embedder.encode_batch(prompts[i:i + batch]))
        print(f"\rembedded {min(i + batch, len(prompts))}/{len(prompts)}", end="", file=log, flush=True)
    print(file=log)
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    if cache is not None:
        np.save(cache, vectors)
    return vectors
