"""Rule-based classifier: a logistic score over length, keywords, code, questions and constraints."""

from __future__ import annotations

import math

from router_core.features import Features, extract
from router_core.types import Conversation


def heuristic_logit(f: Features) -> float:
    z = -1.6
    z += 0.55 * math.log2(1 + f.tokens / 40)
    if f.complex_hits:
        z += 2.2 + 0.4 * min(f.complex_hits - 1, 4)
    if f.medium_hits:
        z += 1.2 + 0.2 * min(f.medium_hits - 1, 3)
    if f.simple_hits and not f.complex_hits:
        z -= 1.0
    z += 0.8 * min(f.code_blocks, 3)
    z += 0.3 * min(max(f.questions - 1, 0), 3)
    z += 0.25 * min(f.constraints, 4)
    z += 0.1 * min(max(f.turns - 4, 0), 6)
    z += 0.6 * f.step_by_step
    z += 0.5 * f.math
    return z


def heuristic_score(conv: Conversation) -> float:
    return 1.0 / (1.0 + math.exp(-heuristic_logit(extract(conv))))


class HeuristicClassifier:
    """Always answers, in microseconds: the last link of every pipeline."""

    name = "heuristic"

    def score_now(self, conv: Conversation) -> float:
        return heuristic_score(conv)

    async def score(self, conv: Conversation) -> float:
        return heuristic_score(conv)
