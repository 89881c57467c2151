"""The default router (`tiered`: quick tasks to `simple`, the difficulty ranking above) against prompt length,
the heuristic, the difficulty head alone and random, per kind of traffic, on sources it never saw.

    python -m bench.studies.default_router [--data data] [--resamples 200] [--smoke]

Leave-source-out: for each source, the head and its length tables are fitted on the other permissively
licensed sources exactly as `smr train --difficulty` fits the shipped one (`train_head`, the shipped
head's target, ridge penalty and chat weight), and the real `TieredClassifier` scores the held-out source's
prompts, as the gateway would. APGR is averaged over up to nine cheap/strong pairs of the source's models.
Then the shipped head, as it is, on RouteLLM's own evaluation sets (`data/heldout`: 28 MMLU subjects absent
from the training data, the GSM8K test split, MT-Bench; Mixtral against GPT-4), never trained on. Last,
the tier mix the shipped default gives each source at the default cut-offs. `--smoke` (the test suite's run): three
sources held out, at most 200 prompts of each source (`outcome_design.smoke_sample`), no RouteLLM sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.studies.outcome_design import parser, smoke_sample
from router_core.classifiers.difficulty import DifficultyClassifier
from router_core.classifiers.heuristic import heuristic_score
from router_core.classifiers.tiered import TieredClassifier
from router_core.difficulty import HEAD_PATH, load_head
from router_core.policy import tier_for
from router_core.static_embed import StaticEmbedder
from router_core.types import Conversation, Turn
from router_lab.difficulty import prompt_inputs, train_head, trainable
from router_lab.held_out import HeldOut, evaluate, interval
from router_lab.outcomes import Outcomes, load_all, load_heldout

CUTOFFS = (0.35, 0.62)
DEFAULT = "default (tiered)"
# The kinds of traffic the targets name, by source.
KIND = {"chat": ("alpaca/", "arena-", "heldout/mt-bench"),
        "maths word problems": ("gsm8k", "bench/math", "heldout/gsm8k"),
        "multiple choice": ("mmlu/", "bench/arc_challenge", "bench/commonsense_qa", "bench/openbook_qa", "bench/gpqa",
                            "heldout/mmlu"),
        "code": ("bench/mbpp", "bench/human_eval"),
        "other questions": ("bench/natural_qa", "bench/trivia_qa", "bench/agentverse-logicgrid", "bench/commongen")}
SMOKE = ("alpaca/vicuna", "bench/human_eval", "mmlu/other")


def kind_of(source: str) -> str:
    return next(k for k, prefixes in KIND.items() if source.startswith(prefixes))


def conv(prompt: str) -> Conversation:
    return Conversation((Turn("user", prompt),))


def scorers(rows: list[Outcomes], tiered: TieredClassifier) -> dict[str, np.ndarray]:
    convs = [conv(r.prompt) for r in rows]
    return {DEFAULT: np.array([tiered.score_now(c).score for c in convs]),
            "head alone": np.array(tiered.ranker.score_batch(convs)),
            "length": np.array([len(r.prompt) for r in rows], dtype=float),
            "heuristic": np.array([heuristic_score(c) for c in convs])}


def apgr(held: HeldOut) -> float:
    return held.apgr if held.apgr is not None else (held.spearman or 0.0)


def measure(part: list[Outcomes], tiered: TieredClassifier, resamples: int) -> tuple[dict[str, float], list[float]]:
    """Each scorer's APGR on one source, and the default's margin over length per bootstrap draw (empty
    without `resamples`, and for a source without model outcomes)."""
    held = {name: evaluate(part, sc, resamples if name == DEFAULT else 0)
            for name, sc in scorers(part, tiered).items()}
    return {name: apgr(h) for name, h in held.items()}, held[DEFAULT].margin_draws


def main() -> None:
    ap = parser(__doc__ or "")
    ap.add_argument("--resamples", type=int, default=0, help="bootstrap draws for each kind's margin interval")
    args = ap.parse_args()
    rows = load_all(Path(args.data))
    if args.smoke:
        rows = smoke_sample(rows)
    shipped = load_head(HEAD_PATH)
    embedder = StaticEmbedder()
    vectors, extra = prompt_inputs([r.prompt for r in rows], embedder)
    sources = np.array([r.source for r in rows])
    usable = np.array([trainable(r, True) for r in rows])
    wanted = [s for s in sorted(set(sources.tolist())) if not args.smoke or s in SMOKE]
    results: dict[str, dict[str, float]] = {}
    draws: dict[str, np.ndarray] = {}
    for s in wanted:
        train = usable & (sources != s)
        head = train_head([r for r, t in zip(rows, train, strict=True) if t], vectors[train], extra[train],
                          shipped.alpha, 0.0, shipped.target, CUTOFFS, chat_weight=shipped.chat_weight)
        tiered = TieredClassifier(DifficultyClassifier(head, embedder), CUTOFFS)
        part = [rows[i] for i in np.flatnonzero(sources == s)]
        results[s], margins = measure(part, tiered, args.resamples)
        if margins:
            draws[s] = np.array(margins)
    tiered = TieredClassifier(DifficultyClassifier(shipped, embedder), CUTOFFS)
    held = [] if args.smoke else load_heldout(Path(args.data) / "heldout")
    for s in sorted({r.source for r in held}):
        part = [r for r in held if r.source == s]
        results[s], margins = measure(part, tiered, args.resamples)
        if margins:
            draws[s] = np.array(margins)
    names = list(next(iter(results.values())))
    print("| source | kind | " + " | ".join(f"APGR {n}" for n in names) + " | random |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for s, r in results.items():
        proxy = " (Spearman with steps)" if s == "gsm8k" else ""
        print(f"| {s}{proxy} | {kind_of(s)} | " + " | ".join(f"{r[n]:.3f}" for n in names)
              + f" | {'0' if proxy else '0.500'} |")
    print("\nPer kind of traffic (mean over its sources; leave-source-out, then RouteLLM's held-out sets):\n")
    print("| kind | sources | " + " | ".join(names) + " | margin over length | its 90 % interval |")
    print("|---|---|" + "---|" * (len(names) + 2))
    for group, label in ((lambda s: not s.startswith("heldout/") and s != "gsm8k", "leave-source-out"),
                         (lambda s: s.startswith("heldout/"), "held out (RouteLLM)")):
        for kind in KIND:
            ss = [s for s in results if kind_of(s) == kind and group(s)]
            if not ss:
                continue
            means = {n: float(np.mean([results[s][n] for s in ss])) for n in names}
            margin = means[DEFAULT] - means["length"]
            with_draws = [draws[s] for s in ss if s in draws]
            ci = "" if len(with_draws) < len(ss) else "{:+.3f} to {:+.3f}".format(*interval(np.mean(with_draws, 0)))
            print(f"| {kind}, {label} | {len(ss)} | " + " | ".join(f"{means[n]:.3f}" for n in names)
                  + f" | {margin:+.3f} | {ci} |")
    which = "at most 200 prompts of each source, smoke mode" if args.smoke else "every prompt of the source"
    print("\nTier mix of the shipped default at cut-offs", CUTOFFS, f"({which}):\n")
    print("| source | prompts | simple | medium | complex |\n|---|---|---|---|---|")
    for s in [*wanted, *sorted({r.source for r in held})]:
        part = [r for r in [*rows, *held] if r.source == s]
        tiers = [tier_for(tiered.score_now(conv(r.prompt)).score, CUTOFFS) for r in part]
        share = {t: tiers.count(t) / len(tiers) for t in ("simple", "medium", "complex")}
        print(f"| {s} | {len(part)} | {share['simple']:.0%} | {share['medium']:.0%} | {share['complex']:.0%} |")


if __name__ == "__main__":
    main()
