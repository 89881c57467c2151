"""The `fixed` classifier: one configured score for every conversation
(`routing.classifier_options.fixed.score`), to pin a tier in tests and demos, or to keep a whole
deployment on one tier while its classifiers are evaluated in shadow."""

from __future__ import annotations

from router_core.classifiers.base import Classifier, Scored
from router_core.types import Conversation


class FixedClassifier(Classifier):
    name = "fixed"

    def __init__(self, score: float) -> None:
        self.scored = Scored(score, (f"fixed score {score:g} (routing.classifier_options.fixed.score)",))

    def score_now(self, conv: Conversation) -> Scored:
        return self.scored
