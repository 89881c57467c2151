"""The `difficulty` classifier: the learned difficulty model (`router_core.difficulty`) on a static
embedding of the conversation's user turns, all on the CPU in well under 2 ms.

Scores one conversation at a time (`score_now`, no task scheduled) or many at once (`score_batch`: one
tokenizer call over the batch). The whole conversation counts: its last three user turns are scored
together (a second turn with its first), and the number of turns is a feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from router_core.classifiers.embedding import classifier_text
from router_core.difficulty import DifficultyHead, extra_features, load_head
from router_core.static_embed import StaticEmbedder
from router_core.types import Conversation


def user_turns(conv: Conversation) -> int:
    return max(1, sum(1 for t in conv.turns if t.role == "user"))


class DifficultyClassifier:
    name = "difficulty"

    def __init__(self, head: DifficultyHead | None = None, embedder: StaticEmbedder | None = None) -> None:
        self.head = head or load_head()
        self.embedder = embedder or StaticEmbedder()

    def score_now(self, conv: Conversation) -> float:
        text = classifier_text(conv)
        x = self.head.design(self.embedder.embed(text), extra_features(text, user_turns(conv)))
        return float(self.head.score(x))

    async def score(self, conv: Conversation) -> float:
        return self.score_now(conv)

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        texts = [classifier_text(c) for c in convs]
        vectors = self.embedder.embed_batch(texts)
        x = np.stack([self.head.design(v, extra_features(t, user_turns(c)))
                      for v, t, c in zip(vectors, texts, convs, strict=True)])
        return [float(s) for s in np.atleast_1d(self.head.score(x))]
