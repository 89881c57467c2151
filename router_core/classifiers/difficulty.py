"""The `difficulty` classifier: the learned difficulty model (`router_core.difficulty`) on a static
embedding of the conversation's user turns, all on the CPU in well under 2 ms.

Scores one conversation at a time (`score_now`, no task scheduled) or many at once (`score_batch`: one
tokenizer call over the batch). The whole conversation counts: its last three user turns are scored
together (a second turn with its first), and the number of turns is a feature.
"""

from __future__ import annotations

import asyncio
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
        self._pending: list[tuple[Conversation, asyncio.Future[float]]] = []
        names = list(self.head.feature_names)
        self._extra_at = len(self.head.weights) - len(names)
        self._names = names

    def _design(self, conv: Conversation) -> np.ndarray:
        text = classifier_text(conv)
        return self.head.design(self.embedder.embed(text), extra_features(text, user_turns(conv)))

    def score_now(self, conv: Conversation) -> float:
        return float(self.head.score(self._design(conv)))

    def score_with_reasons(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        """The score, and what moved the prediction most: the embedding (what the text is about) and the
        named features, each with its signed share of the prediction in the head's units."""
        x = self._design(conv)
        w = np.asarray(self.head.weights)
        parts = [("what the text is about", float(x[:self._extra_at] @ w[:self._extra_at]))]
        parts += [(name, float(x[self._extra_at + i] * w[self._extra_at + i])) for i, name in enumerate(self._names)]
        moved = sorted((p for p in parts if abs(p[1]) >= 0.02), key=lambda p: -abs(p[1]))[:top]
        return float(self.head.score(x)), tuple(f"{name} ({c:+.2f})" for name, c in moved)

    async def score(self, conv: Conversation) -> float:
        """Concurrent callers share one batch: the requests that arrive before the loop's next turn are
        scored with one tokenizer call (its batch runs on every core)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((conv, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            scores = self.score_batch([c for c, _ in batch])
        except Exception as exc:  # every waiter hears of it; the pipeline falls through to its next classifier
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for (_, f), s in zip(batch, scores, strict=True):
            if not f.done():
                f.set_result(s)

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        texts = [classifier_text(c) for c in convs]
        vectors = self.embedder.embed_batch(texts)
        x = np.stack([self.head.design(v, extra_features(t, user_turns(c)))
                      for v, t, c in zip(vectors, texts, convs, strict=True)])
        return [float(s) for s in np.atleast_1d(self.head.score(x))]
