"""Rule-based classifier: a logistic score over length, keywords, code, questions and constraints."""

from __future__ import annotations

import math

from router_core.classifiers.base import Classifier, Scored
from router_core.features import Features, extract
from router_core.types import Conversation


def contributions(f: Features) -> list[tuple[str, float]]:
    """Each feature's share of the logit, named as a person would read it (summed in this order)."""
    parts = [("prior", -1.6), (f"length: {f.tokens} tokens", 0.55 * math.log2(1 + f.tokens / 40))]
    if f.complex_hits:
        parts.append((f"design/reasoning words: {f.complex_hits}", 2.2 + 0.4 * min(f.complex_hits - 1, 4)))
    if f.medium_hits:
        parts.append((f"explain/compare words: {f.medium_hits}", 1.2 + 0.2 * min(f.medium_hits - 1, 3)))
    if f.simple_hits and not f.complex_hits:
        parts.append((f"lookup/transform words: {f.simple_hits}", -1.0))
    parts += [(f"code blocks: {f.code_blocks}", 0.8 * min(f.code_blocks, 3)),
              (f"questions: {f.questions}", 0.3 * min(max(f.questions - 1, 0), 3)),
              (f"constraints: {f.constraints}", 0.25 * min(f.constraints, 4)),
              (f"turns: {f.turns}", 0.1 * min(max(f.turns - 4, 0), 6)),
              ("asks for step-by-step reasoning", 0.6 * f.step_by_step),
              ("maths", 0.5 * f.math)]
    return parts


def heuristic_logit(f: Features) -> float:
    return sum(c for _, c in contributions(f))


def scored(conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
    """The score and the features that moved it most (with their signed share of the logit), from one
    pass over the conversation."""
    parts = contributions(extract(conv))
    score = 1.0 / (1.0 + math.exp(-sum(c for _, c in parts)))
    moved = sorted(((n, c) for n, c in parts if n != "prior" and abs(c) >= 0.05), key=lambda p: -abs(p[1]))
    return score, tuple(f"{name} ({c:+.2f})" for name, c in moved[:top])


def heuristic_score(conv: Conversation) -> float:
    return 1.0 / (1.0 + math.exp(-heuristic_logit(extract(conv))))


class HeuristicClassifier(Classifier):
    """Always answers, in microseconds: the last link of every pipeline."""

    name = "heuristic"

    def score_now(self, conv: Conversation) -> Scored:
        return Scored(*scored(conv))
