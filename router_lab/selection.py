"""Choosing the difficulty model's settings on held-out sources: the grid of targets, ridge penalties,
length boosts and chat weights, each cross-validated by holding out whole sources (`held_out`); the
chosen one is first the one with no source below random, then the best mean margin over prompt length
(chat and benchmark sources weighted alike). `table` prints one row per held-out source.
Used by `smr eval --leave-source-out`, `smr train --difficulty` and bench/studies.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router_lab.difficulty import prompt_inputs
from router_lab.held_out import HeldOut, evaluate, leave_source_out, margin_interval, summary
from router_lab.outcomes import Outcomes

TARGETS = ("rasch", "share", "gap", "share+gap")
ALPHAS = (10.0, 100.0)
BOOSTS = (0.0, 0.25)   # rank-combining with prompt length: a boost of the length weight
CHAT_WEIGHTS = (1.0, 4.0)  # a chat prompt's weight in the fit (chat is ~6 % of the permissive training prompts)
RESAMPLES = 500   # bootstrap draws of each held-out source's prompts, for the router's 90 % interval


def embed(rows: Sequence[Outcomes], kind: str, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows' embeddings (static or MiniLM) and named features; the embeddings kept in `cache` if given."""
    texts = [r.prompt for r in rows]
    vectors, extra = prompt_inputs(texts)
    if kind == "static":
        return vectors, extra
    if cache is not None and cache.exists():
        v = np.load(cache)
        if len(v) == len(rows):
            return np.asarray(v), extra
    from router_core.embedder import Embedder

    e = Embedder().load()
    vectors = np.vstack([e.encode_batch(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    if cache is not None:
        np.save(cache, vectors)
    return vectors, extra


def rank(s: dict[str, float]) -> tuple[float, float]:
    margin = ((s.get("apgr_chat", 0) - s.get("apgr_length_chat", 0))
              + (s.get("apgr_bench", 0) - s.get("apgr_length_bench", 0))) / 2
    return (1.0 if s["worst_apgr"] >= 0.5 else 0.0), margin


def search(rows: Sequence[Outcomes], vectors: np.ndarray, extra: np.ndarray, permissive_only: bool,
           log: Any = sys.stderr) -> tuple[dict[str, Any], list[HeldOut], list[str]]:
    results: dict[tuple[str, float, float, float], tuple[dict[str, float], list[HeldOut]]] = {}
    for target, alpha, boost, chat in itertools.product(TARGETS, ALPHAS, BOOSTS, CHAT_WEIGHTS):
        held = leave_source_out(rows, vectors, extra, alpha, boost, target, permissive_only, chat)
        results[(target, alpha, boost, chat)] = (summary(held), held)
        print(f"target {target:<9} alpha {alpha:<6} boost {boost:<4} chat weight {chat:<4}: {summary(held)}",
              file=log, flush=True)
    best = max(results, key=lambda k: rank(results[k][0]))
    target, alpha, boost, chat = best  # the chosen setting again, with each source's bootstrap interval
    chosen_held = leave_source_out(rows, vectors, extra, alpha, boost, target, permissive_only, chat, RESAMPLES)
    lines = ["| target | ridge alpha | length boost | chat weight | APGR chat | APGR bench | worst source | "
             "sources below random |", "|---|---|---|---|---|---|---|---|"]
    for (t, a, b, chat), (s, held) in results.items():
        below = sum(1 for h in held if h.apgr is not None and h.apgr < 0.5)
        lines.append(f"| {t} | {a} | {b} | {chat} | {s.get('apgr_chat', 0):.3f} | {s.get('apgr_bench', 0):.3f} | "
                     f"{s['worst_apgr']:.3f} | {below} |")
    chosen = {"target": best[0], "alpha": best[1], "boost": best[2], "chat_weight": best[3], **results[best][0]}
    return chosen, chosen_held, lines


def heuristic_results(rows: Sequence[Outcomes]) -> dict[str, HeldOut]:
    """The rule-based classifier on every source (it is not trained, so nothing is held out)."""
    from router_core.classifiers.heuristic import HeuristicClassifier
    from router_core.types import Conversation, Turn

    h = HeuristicClassifier()

    def score(prompt: str) -> float:
        scored = h.score_now(Conversation((Turn("user", prompt),)))  # the heuristic always answers inline
        assert scored is not None
        return scored.score

    out = {}
    for source in sorted({r.source for r in rows}):
        part = [r for r in rows if r.source == source]
        out[source] = evaluate(part, np.array([score(r.prompt) for r in part]))
    return out


def table(held: Sequence[HeldOut], heuristic: dict[str, HeldOut] | None = None) -> str:
    f = lambda x: "" if x is None else f"{x:.3f}"  # noqa: E731
    p = lambda x: "" if x is None else f"{x:.1%}"  # noqa: E731
    heur = heuristic or {}
    lines = ["| held-out source | kind | prompts | model pairs | APGR router | router 90 % interval | APGR length | "
             "APGR heuristic | APGR random | saving at 95 % router | saving at 95 % length |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in held:
        other = heur.get(h.source)
        if h.spearman is not None:
            lines.append(f"| {h.source} | {h.kind} | {h.prompts} | (no outcomes) | Spearman with steps "
                         f"{h.spearman:.3f} | | {h.spearman_length:.3f} | {f(other.spearman if other else None)} "
                         "| 0 | | |")
            continue
        interval = f"{h.apgr_low:.3f}–{h.apgr_high:.3f}" if h.apgr_low is not None and h.apgr_high is not None else ""
        lines.append(f"| {h.source} | {h.kind} | {h.prompts} | {h.pairs} | {f(h.apgr)} | {interval} | "
                     f"{f(h.apgr_length)} | {f(other.apgr if other else None)} | 0.500 | {p(h.saving_95)} | "
                     f"{p(h.saving_95_length)} |")
    s = summary(held)
    hs = summary(list(heur.values())) if heur else {}
    for kind, label in (("chat", "chat sources"), ("bench", "benchmark sources")):
        lines.append(f"| **mean, {label}** | | | | **{s.get(f'apgr_{kind}', 0):.3f}** | | "
                     f"{s.get(f'apgr_length_{kind}', 0):.3f} | {hs.get(f'apgr_{kind}', 0):.3f} | 0.500 | | |")
    for kind, label in (("chat", "chat"), ("bench", "benchmark")):
        margin = margin_interval(held, kind)
        if margin is not None:
            lines.append(f"\nMean margin over prompt length, {label} sources: "
                         f"{s.get(f'apgr_{kind}', 0) - s.get(f'apgr_length_{kind}', 0):+.3f} "
                         f"(90 % bootstrap interval {margin[0]:+.3f} to {margin[1]:+.3f}).")
    below = [h for h in held if h.apgr is not None and h.apgr < 0.5]
    surely = [h.source for h in below if h.surely_below_random]
    lines.append(f"\nSources below random: {len(below)} of {sum(1 for h in held if h.apgr is not None)}; "
                 f"below it by more than resampling their prompts explains (90 % interval under 0.5): "
                 f"{len(surely)}{' (' + ', '.join(surely) + ')' if surely else ''}.")
    return "\n".join(lines)
