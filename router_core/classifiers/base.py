"""The classifier contract (RouteLLM's one-method router, made async), declared once:

    Classifier (ABC)
      name        what the pipeline and the logs call it (its registry name)
      label       what it reads, for the start-up log and /health (default: the name)
      needs       shared resources it reads, e.g. {"encoder"} (the transformer encoder): the gateway
                  loads the encoder only where a configured classifier needs it
      score_now   the synchronous fast path: a `Scored`, or None where the answer must be awaited
      score       the awaited path (default: `score_now`); a `Scored` in [0, 1], the chance the cheap
                  model is not good enough, with the reasons in words
      score_batch blocking, offline (evaluation, training): one score per conversation, none declined
                  (default: `score_now` of each)
      aclose      releases what it holds (default: nothing)

A classifier that cannot score a conversation raises `ClassifierError`, or `Abstain` to decline it; the
pipeline then asks the next one. The pipeline calls only these methods.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from typing import ClassVar

import msgspec

from router_core.types import Conversation

# What `needs` may name: the shared transformer encoder (router_core.embedder.Embedder).
ENCODER = "encoder"


class ClassifierError(Exception):
    """The classifier could not score this conversation; the pipeline falls through to the next."""


class Abstain(ClassifierError):
    """The classifier declines a conversation outside what it knows (not a failure: nothing is logged
    as a warning); the pipeline asks the next one."""


class Scored(msgspec.Struct, frozen=True):
    """A score in [0, 1] and why, as far as the classifier can say (`length: 40 tokens (+0.30)`)."""

    score: float
    reasons: tuple[str, ...] = ()


class Classifier(ABC):
    """One classifier; override `score_now` (answers inline) or `score` (must be awaited), or both."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.score is Classifier.score and cls.score_now is Classifier.score_now:
            raise TypeError(f"{cls.__name__} must override score_now or score")

    @property
    def label(self) -> str:
        return self.name

    def score_now(self, conv: Conversation) -> Scored | None:
        return None

    async def score(self, conv: Conversation) -> Scored:
        now = self.score_now(conv)
        if now is None:
            raise ClassifierError(f"{self.name}: no answer inline and no awaited path")
        return now

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        out = []
        for conv in convs:
            now = self.score_now(conv)
            if now is None:
                raise NotImplementedError(f"the {self.name} classifier has no blocking path: await score()")
            out.append(now.score)
        return out

    async def aclose(self) -> None:
        return None
