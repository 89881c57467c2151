"""The `difficulty` classifier: the learned difficulty model (`router_core.difficulty`) on a static
embedding of the conversation's user turns, all on the CPU in well under 2 ms.

Scores one conversation at a time (`score_now`, no task scheduled) or many at once (`score_batch`: one
tokenizer call over the batch). The whole conversation counts: its last three user turns are scored
together (a second turn with its first), and the number of turns is a feature.
"""

from __future__ import annotations

import asyncio
import math
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
        # The head as arrays, once: a decision is then two dot products (it runs inline, per request).
        w = np.asarray(self.head.weights, dtype=np.float64)
        n = len(self.head.feature_names)
        self._w_text, self._w_extra = w[:-n], w[-n:]
        self._mean = np.asarray(self.head.feature_mean, dtype=np.float64)
        self._std = np.asarray(self.head.feature_std, dtype=np.float64)
        self._names = list(self.head.feature_names)

    def _parts(self, conv: Conversation) -> tuple[float, np.ndarray]:
        """The embedding's share of the prediction, and each named feature's."""
        text = classifier_text(conv)
        z = (np.asarray(extra_features(text, user_turns(conv))) - self._mean) / self._std
        return float(self.embedder.embed(text) @ self._w_text), z * self._w_extra

    def _score(self, prediction: float) -> float:
        t = self.head.scale * prediction + self.head.shift
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, t))))

    def score_now(self, conv: Conversation) -> float:
        text_part, extra = self._parts(conv)
        return self._score(text_part + float(extra.sum()) + self.head.bias)

    def score_with_reasons(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        """The score, and what moved the prediction most: the embedding (what the text is about) and the
        named features, each with its signed share of the prediction in the head's units."""
        text_part, extra = self._parts(conv)
        parts = [("what the text is about", text_part), *zip(self._names, extra.tolist(), strict=True)]
        moved = sorted((p for p in parts if abs(p[1]) >= 0.02), key=lambda p: -abs(p[1]))[:top]
        score = self._score(text_part + float(extra.sum()) + self.head.bias)
        return score, tuple(f"{name} ({c:+.2f})" for name, c in moved)

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
        if not convs:
            return []
        texts = [classifier_text(c) for c in convs]
        extra = np.array([extra_features(t, user_turns(c)) for t, c in zip(texts, convs, strict=True)])
        pred = (self.embedder.embed_batch(texts) @ self._w_text + ((extra - self._mean) / self._std) @ self._w_extra
                + self.head.bias)
        z = np.clip(self.head.scale * pred + self.head.shift, -60.0, 60.0)
        return (1.0 / (1.0 + np.exp(-z))).tolist()
