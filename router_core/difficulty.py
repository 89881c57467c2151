"""The difficulty model: how likely a cheap model is to fail a conversation, learned from many models'
outcomes on 15,499 prompts of five kinds of traffic (`router_core.outcomes`).

Targets, per source and z-scored within it so sources share one scale: an item-response fit of every
model's outcome on every prompt (`irt.rasch`: each prompt's difficulty), the share of models that
failed, the gap between the stronger and the weaker third of the source's models, or the mean of the
last two (GSM8K, which has no model outcomes, uses its solutions' number of calculation steps).
Features: a static embedding of the user turns (`static_embed`), length and structure, task-type flags
and the number of turns, all read off the same token ids (`token_features`), clipped to the training
range (`Scaling`). Head: weighted ridge regression (chat prompts may weigh more), plus a boost of the
length weight (shrinkage towards the length baseline). The score is the prediction through a logistic
map fitted so the configured cut-offs split the training prompts 50 / 30 / 20.

Evaluation (`leave_source_out`): each source is held out whole, the head fitted on the others; on the
held-out source the router's APGR is averaged over several cheap/strong model pairs (weaker third vs
stronger third of its models) and compared with prompt length's and random routing's (0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from router_core.evals.metrics import apgr, curve, report
from router_core.irt import rasch, zscore
from router_core.outcomes import NON_COMMERCIAL, Outcomes
from router_core.static_embed import StaticEmbedder
from router_core.token_features import FEATURES, FLAGS, TokenFeatures

HEAD_PATH = Path(__file__).resolve().parent / "classifiers" / "difficulty_head.json"
# The head for each embedding the text part can read: the static one (CPU, the default) and MiniLM itself
# (the transformer path, the default where a GPU is present).
HEAD_PATHS = {"static": HEAD_PATH, "minilm": HEAD_PATH.with_name("difficulty_head_minilm.json")}
EMBEDDINGS = tuple(HEAD_PATHS)
EXTRA_FEATURES = FEATURES
# Features that say which dataset a prompt came from more than how hard it is (lettered answer options,
# the question apart from them, "I and III only" lists): held at zero in the fit, so they never decide
# the tier of a prompt, with them or without them.
SOURCE_MARKS = ("log_options_chars", "log_question_chars", "log_roman_items")
# Kinds of traffic ranked by length within the kind (`router_core.kinds`), and the points of each table.
LENGTH_RANKED = ("multiple_choice", "maths", "code")
TABLE_POINTS = 41
SHARES = (0.5, 0.3, 0.2)
CHEAP_COST = (200 * 0.30 + 300 * 2.50) / 1e6   # a typical prompt on Gemini Flash ...
STRONG_COST = (200 * 1.25 + 300 * 10.0) / 1e6  # ... and on Gemini Pro


def prompt_inputs(texts: Sequence[str], embedder: StaticEmbedder | None = None,
                  turns: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The static embedding and the named features (EXTRA_FEATURES) of each text, from one tokenizing."""
    e = embedder or StaticEmbedder()
    tokens = e.tokenize(texts)
    return e.pool(tokens), TokenFeatures(e.tokenizer).compute(texts, tokens, turns)


class Scaling(msgspec.Struct, frozen=True):
    """How the named features enter the head: clipped to the training prompts' range (0.5th to 99.5th
    percentile: nothing is extrapolated, a two-character "hi" counts as the shortest prompts trained on),
    then centred and scaled. Flags are scaled by 0.5 (a binary feature's largest spread), not by their
    own spread, so a flag seen on a few training prompts cannot swing a score; a feature constant in
    training (the number of turns: every training prompt is one turn) gets no say."""
    mean: list[float]
    std: list[float]
    lo: list[float]
    hi: list[float]

    def apply(self, extra: np.ndarray) -> np.ndarray:
        return (np.clip(extra, self.lo, self.hi) - np.asarray(self.mean)) / np.asarray(self.std)


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


class LengthRank(msgspec.Struct, frozen=True):
    """One kind's ranking by length, on the head's scale: the prompt's log length placed among the training
    prompts of its kind (`loglen`, quantiles), read off the head's predictions for them (`pred`, the same
    quantiles): a longer prompt of the kind ranks higher, and the kind keeps the head's spread."""
    loglen: list[float]
    pred: list[float]

    def at(self, loglen: float) -> float:
        return float(np.interp(loglen, self.loglen, self.pred))


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


class DifficultyHead(msgspec.Struct, frozen=True):
    weights: list[float]           # one per embedding dimension, then one per extra feature
    bias: float
    feature_names: list[str]       # EXTRA_FEATURES when trained
    scaling: Scaling
    scale: float = 1.0             # score = sigmoid(scale * prediction + shift)
    shift: float = 0.0
    alpha: float = 10.0
    length_boost: float = 0.0
    chat_weight: float = 1.0       # each chat prompt's weight in the fit (benchmark prompts weigh 1)
    target: str = "rasch"
    embedding: str = "static"      # what the text part reads: "static" (static_embed) or "minilm" (Embedder)
    trained_on: list[str] = []
    licences: list[str] = []
    cv: dict[str, float] = {}
    length_ranked: dict[str, LengthRank] = {}   # the kinds ranked by length (`tiered` classifier)


def load_head(path: Path = HEAD_PATH) -> DifficultyHead:
    head = msgspec.json.decode(path.read_bytes(), type=DifficultyHead)
    if head.embedding not in EMBEDDINGS:
        raise ValueError(f"{path}: embedding {head.embedding!r} is none of {', '.join(EMBEDDINGS)}")
    if tuple(head.feature_names) != EXTRA_FEATURES:
        raise ValueError(f"{path}: trained on features {head.feature_names}; this version computes "
                         f"{list(EXTRA_FEATURES)}: retrain it (smr train --difficulty)")
    return head


def difficulty_logits(head: DifficultyHead, x: np.ndarray) -> np.ndarray:
    """The score's logit for rows of the head's design (text vector, then the scaled named features)."""
    return head.scale * (x @ np.asarray(head.weights) + head.bias) + head.shift


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


# ----------------------------------------------------------------------------- evaluation
class HeldOut(msgspec.Struct, frozen=True):
    source: str
    kind: str
    prompts: int
    pairs: int
    apgr: float | None            # router, mean over the cheap/strong pairs
    apgr_length: float | None
    saving_95: float | None       # cost saving at 95 % of the strong model's quality, router
    saving_95_length: float | None
    spearman: float | None = None         # gsm8k: rank correlation with the calculation steps
    spearman_length: float | None = None
    apgr_low: float | None = None         # the router's APGR, 90 % bootstrap interval over the source's prompts
    apgr_high: float | None = None
    margin_draws: list[float] = []        # the router's APGR minus length's, per bootstrap draw

    @property
    def surely_below_random(self) -> bool:
        """Below random by more than resampling the source's prompts explains (its interval under 0.5)."""
        return self.apgr_high is not None and self.apgr_high < 0.5


def model_pairs(rows: Sequence[Outcomes], most: int = 3) -> list[tuple[str, str]]:
    """Cheap/strong pairs: models of the weaker third against models of the stronger third."""
    q, models = quality_matrix(rows)
    order = [models[i] for i in np.argsort(np.nanmean(q, axis=0))]
    third = max(1, len(order) // 3)
    weak, strong = order[:third], order[-third:]
    pick = lambda xs: [xs[int(i)] for i in np.linspace(0, len(xs) - 1, min(most, len(xs)))]  # noqa: E731
    return [(w, s) for w in dict.fromkeys(pick(weak)) for s in dict.fromkeys(pick(strong)) if w != s]


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def bootstrap_apgr(score_sets: Sequence[np.ndarray], cheap: Sequence[np.ndarray], good: Sequence[np.ndarray],
                   keep: Sequence[np.ndarray], resamples: int, seed: int = 0) -> np.ndarray:
    """The pair-averaged APGR of each of `score_sets` (rows) when the source's prompts are drawn again with
    replacement `resamples` times (columns; the same draw for every score set and every pair): how much of
    a source's figure is which prompts it happens to hold. `keep[p]`: the prompts pair p has outcomes for;
    `cheap[p]`/`good[p]`: theirs."""
    rng = np.random.default_rng(seed)
    n = len(score_sets[0])
    position = [np.full(n, -1) for _ in keep]
    for p, k in zip(position, keep, strict=True):
        p[k] = np.arange(len(k))
    out = np.zeros((len(score_sets), resamples))
    for j in range(resamples):
        draw = rng.integers(0, n, n)
        # Per pair: the drawn prompts it has outcomes for, and where those outcomes sit in its arrays.
        drawn = [(draw[at >= 0], at[at >= 0], c, g) for at, c, g in
                 ((pos[draw], c, g) for pos, c, g in zip(position, cheap, good, strict=True))]
        for i, scores in enumerate(score_sets):
            out[i, j] = float(np.mean([apgr(curve(scores[rows], c[at], g[at])) for rows, at, c, g in drawn
                                       if len(rows)]))
    return out


def interval(draws: np.ndarray) -> tuple[float, float]:
    """The 90 % interval (5th to 95th percentile) of bootstrap draws."""
    low, high = np.percentile(draws, [5, 95])
    return float(low), float(high)


def margin_interval(results: Sequence[HeldOut], kind: str) -> tuple[float, float] | None:
    """90 % interval of the mean margin over prompt length across the sources of `kind` (each source's
    draws are independent of the others', so the mean of the k-th draws is one draw of the mean)."""
    draws = [r.margin_draws for r in results if r.kind == kind and r.margin_draws]
    return interval(np.mean(np.array(draws), axis=0)) if draws else None


def evaluate(rows: Sequence[Outcomes], scores: np.ndarray, resamples: int = 0) -> HeldOut:
    """The router's (`scores`) and prompt length's APGR on one source, averaged over its model pairs;
    with `resamples`, also the router's 90 % bootstrap interval and its margin over length per draw."""
    r0 = rows[0]
    length = np.array([len(r.prompt) for r in rows], dtype=float)
    if r0.proxy is not None:
        steps = np.array([r.proxy or 0.0 for r in rows])
        return HeldOut(r0.source, r0.kind, len(rows), 0, None, None, None, None, spearman(scores, steps),
                       spearman(length, steps))
    pairs = model_pairs(rows)
    router, base, save_r, save_l = [], [], [], []
    kept, cheaps, goods = [], [], []
    for weak, strong in pairs:
        keep = np.array([i for i, r in enumerate(rows) if weak in r.quality and strong in r.quality], dtype=int)
        cheap = np.array([rows[i].quality[weak] for i in keep])
        good = np.array([rows[i].quality[strong] for i in keep])
        a = report(scores[keep], cheap, good, CHEAP_COST, STRONG_COST)
        b = report(length[keep], cheap, good, CHEAP_COST, STRONG_COST)
        router.append(a.apgr)
        base.append(b.apgr)
        save_r.append(a.cost_saving_at_95)
        save_l.append(b.cost_saving_at_95)
        kept.append(keep)
        cheaps.append(cheap)
        goods.append(good)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    held = HeldOut(r0.source, r0.kind, len(rows), len(pairs), mean(router), mean(base), mean(save_r), mean(save_l))
    if not (resamples and pairs):
        return held
    draws = bootstrap_apgr([scores, length], cheaps, goods, kept, resamples)
    low, high = interval(draws[0])
    return msgspec.structs.replace(held, apgr_low=low, apgr_high=high, margin_draws=(draws[0] - draws[1]).tolist())


def trainable(r: Outcomes, permissive_only: bool) -> bool:
    return not (permissive_only and r.licence == NON_COMMERCIAL)


def leave_source_out(rows: Sequence[Outcomes], vectors: np.ndarray, extra: np.ndarray, alpha: float, boost: float,
                     target: str = "rasch", permissive_only: bool = True, chat_weight: float = 1.0,
                     resamples: int = 0) -> list[HeldOut]:
    """Each source held out whole; the head is fitted on the other (trainable) sources (`vectors` and
    `extra`: `prompt_inputs` of the rows' prompts). `resamples`: bootstrap intervals of each source's APGR."""
    x, _ = design(extra, vectors)
    y = targets(rows, target)
    sources = np.array([r.source for r in rows])
    kinds = np.array([r.kind for r in rows])
    usable = np.array([trainable(r, permissive_only) for r in rows])
    out = []
    for source in sorted(set(sources)):
        held = sources == source
        train = usable & ~held
        w, b = fit(x[train], y[train], alpha, boost, kind_weights(kinds[train], chat_weight))
        idx = np.where(held)[0]
        out.append(evaluate([rows[i] for i in idx], x[idx] @ w + b, resamples))
    return out


def summary(results: Sequence[HeldOut]) -> dict[str, float]:
    """Mean APGR (router and length) over the chat and the benchmark sources, and the worst margin over
    random."""
    out: dict[str, float] = {}
    for kind in ("chat", "bench"):
        rs = [r for r in results if r.kind == kind and r.apgr is not None]
        if rs:
            out[f"apgr_{kind}"] = round(float(np.mean([r.apgr for r in rs])), 4)  # type: ignore[misc]
            out[f"apgr_length_{kind}"] = round(float(np.mean([r.apgr_length for r in rs])), 4)  # type: ignore[misc]
    scored = [r.apgr for r in results if r.apgr is not None]
    out["worst_apgr"] = round(min(scored), 4) if scored else 0.0
    return out


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
