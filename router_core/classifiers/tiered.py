"""The `tiered` classifier, the default: two decisions instead of one score with two cut-offs.

1. `simple` is a small local model, so its question is "can a 350M model do this at all?":
   `router_core.trivial.assess` answers it from the last user turn, precisely (greetings and thanks, a
   phrase to translate, a short text to fix, extraction, classification, formatting, a word's meaning, a
   unit conversion or one sum, a simple assistant action; and nothing that asks for more). Only those go to
   `simple`. (Not one-fact questions: knowledge is where small models fail most, docs/routing.md.)
2. Everything else is ranked for `medium` against `complex` (which of two capable models is needed: the
   question the outcome data answers). The rank transfers best when each kind of traffic gets the signal
   that holds on sources never trained on (docs/routing.md): chat by the difficulty head; multiple-choice
   questions, maths problems and code tasks by their length within their kind, placed on the head's scale
   (`DifficultyHead.length_ranked`). What a turn asks for in words (a design, a proof, code, a plan) lifts
   its rank; a short question on a text pasted with it is reading, medium at most.

The score keeps the pipeline's contract (a number in [0, 1] against `routing.cutoffs`): a quick task scores
below the first cut-off, anything else at least the first cut-off; within each, the order is the ranking's
(monotone in the head's calibrated score), so the second cut-off splits medium from complex as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from router_core.classifiers.base import Classifier, Scored
from router_core.classifiers.difficulty import DifficultyClassifier
from router_core.classifiers.embedding import classifier_text
from router_core.kinds import traffic_kind
from router_core.trivial import assess
from router_core.types import Conversation

# What a prompt asks for, where a word says so, moves its rank up by this much (in the head's logit units):
# a design, a proof, code or a plan is work for a capable model whatever its length. Measured with
# `python -m bench.studies.default_router` (docs/routing.md): 0 -> 0.7 -> 1.4 moved chat from +0.052 to +0.057
# to +0.059 over length, leave-source-out, and left the other kinds within 0.004.
ASKS_FOR_BUMP = {"asks for a design": 1.0, "asks for a proof or derivation": 1.0, "asks for code": 1.0,
                 "asks for a plan": 1.0}
MAX_BUMP = 2.0   # two of them (a design with a migration plan) at most
_KIND_WORDS = {"multiple_choice": "a multiple-choice question", "maths": "a maths problem", "code": "a code task"}


def last_user(conv: Conversation) -> str:
    users = [t.text for t in conv.turns if t.role == "user"]
    return users[-1] if users else (conv.turns[-1].text if conv.turns else "")


class TieredClassifier(Classifier):
    """A quick-task detector for `simple`, then the difficulty ranking for `medium` against `complex`."""

    name = "tiered"

    def __init__(self, ranker: DifficultyClassifier, cutoffs: Sequence[float]) -> None:
        self.ranker = ranker
        self.cutoffs = (float(cutoffs[0]), float(cutoffs[1]))
        self.tables = ranker.head.length_ranked

    @property
    def label(self) -> str:
        return f"tiered (quick tasks to simple; {self.ranker.label} ranks the rest)"

    def _above_simple(self, calibrated: float) -> float:
        """The head's calibrated score, kept monotone, lifted to at least the first cut-off."""
        low, high = self.cutoffs
        return calibrated if calibrated >= high else low + (high - low) * calibrated / high

    def _ranked(self, conv: Conversation, text: str, kind: str, top: int) -> tuple[float, tuple[str, ...]]:
        """The head's calibrated score in (0, 1) for the medium/complex split, and why, in words: chat by the
        head; a kind with a length table by its length among the training prompts of that kind (`text`: the
        conversation's `classifier_text`, `kind` its kind)."""
        table = self.tables.get(kind)
        if table is None:   # chat (or a head without tables): the difficulty head ranks it
            return self.ranker.ranked(conv, top)
        head = self.ranker.head
        t = head.scale * table.at(math.log1p(len(text))) + head.shift
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, t)))), (
            f"{_KIND_WORDS[kind]}, ranked by its length: {len(text)} chars",)

    def score_now(self, conv: Conversation) -> Scored:
        return Scored(*self.score_with_reasons(conv))

    def score_with_reasons(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        """The score and why, with the `top` reasons (`score_now` keeps three)."""
        last, text = last_user(conv), classifier_text(conv)
        kind = traffic_kind(text)
        verdict = assess(last, kind if text == last == last.strip() else None)   # one turn: its kind once
        calibrated, reasons = self._ranked(conv, text, kind, top - 1)
        if verdict.trivial:   # below the first cut-off, in the ranking's order
            return self.cutoffs[0] * calibrated, (verdict.why,)
        if verdict.lookup:    # medium at most, in the ranking's order
            low, high = self.cutoffs
            return low + (high - low) * 0.999 * calibrated, (verdict.why, "medium at most")
        bump = min(MAX_BUMP, sum(ASKS_FOR_BUMP.get(a, 0.0) for a in verdict.asks_for))
        if bump:
            calibrated = 1.0 / (1.0 + math.exp(-(math.log(calibrated / (1.0 - calibrated)) + bump)))
        return self._above_simple(calibrated), (verdict.why, *reasons)
