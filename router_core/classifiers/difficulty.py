"""The `difficulty` classifier: the learned difficulty model (`router_core.difficulty`) on a static
embedding of the conversation's user turns, all on the CPU in well under 2 ms.

Scores one conversation at a time (`score_now`, no task scheduled: a path of sets and dicts, no array
bookkeeping) or many at once (`score_batch`: the embedding and the features of the whole batch are a
few numpy operations over its token ids). The whole conversation counts: its last three user turns are
scored together (a second turn with its first), and the number of turns is a feature. A conversation
shorter than the shortest prompts the head was trained on is declined (`Abstain`): the pipeline's next
classifier answers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import numpy as np

from router_core.classifiers.base import Abstain
from router_core.classifiers.embedding import classifier_text
from router_core.difficulty import DifficultyHead, load_head
from router_core.static_embed import StaticEmbedder
from router_core.token_features import TokenFeatures
from router_core.types import Conversation


def user_turns(conv: Conversation) -> int:
    return max(1, sum(1 for t in conv.turns if t.role == "user"))


class DifficultyClassifier:
    name = "difficulty"

    def __init__(self, head: DifficultyHead | None = None, embedder: StaticEmbedder | None = None) -> None:
        self.head = head or load_head()
        self.embedder = embedder or StaticEmbedder()
        self.features = TokenFeatures(self.embedder.tokenizer)
        self._pending: list[tuple[Conversation, asyncio.Future[float]]] = []
        # The head as arrays, once: a decision is then two dot products (it runs inline, per request).
        w = np.asarray(self.head.weights, dtype=np.float64)
        n = len(self.head.feature_names)
        self._w_text, self._w_extra = w[:-n], w[-n:]
        self._names = list(self.head.feature_names)
        sc = self.head.scaling   # `Scaling.apply` times the weights, its arrays made once
        self._lo, self._hi, self._mean = np.asarray(sc.lo), np.asarray(sc.hi), np.asarray(sc.mean)
        self._per_unit = self._w_extra / np.asarray(sc.std)
        # Shorter than anything it was trained on (greetings, "go on" alone): the head declines, the
        # pipeline's next classifier (the heuristic, built for those) answers.
        self.shortest = math.floor(math.expm1(self.head.scaling.lo[self._names.index("log_chars")]))

    def _decline_if_short(self, text: str) -> None:
        if len(text) < self.shortest:
            raise Abstain(f"shorter than the {self.shortest} characters of the shortest prompts it was trained on")

    def _shares(self, extra: np.ndarray) -> np.ndarray:
        """Each named feature's share of the prediction (one row or many)."""
        return (np.clip(extra, self._lo, self._hi) - self._mean) * self._per_unit

    def _parts(self, convs: Sequence[Conversation]) -> tuple[np.ndarray, np.ndarray]:
        """Per conversation, the embedding's share of the prediction and each named feature's."""
        texts = [classifier_text(c) for c in convs]
        tokens = self.embedder.tokenize(texts)
        extra = self.features.compute(texts, tokens, [user_turns(c) for c in convs])
        return self.embedder.pool(tokens) @ self._w_text, self._shares(extra)

    def _parts_one(self, conv: Conversation) -> tuple[float, np.ndarray]:
        """`_parts` for one conversation, on the one-text paths (no batch bookkeeping)."""
        text = classifier_text(conv)
        self._decline_if_short(text)
        ids = self.embedder.token_ids([text])[0]
        extra = self.features.one(text, ids, user_turns(conv))
        return float(self.embedder.pool_one(ids) @ self._w_text), self._shares(extra)

    def _scores(self, text_part: np.ndarray, extra: np.ndarray) -> np.ndarray:
        t = self.head.scale * (text_part + extra.sum(axis=1) + self.head.bias) + self.head.shift
        return 1.0 / (1.0 + np.exp(-np.clip(t, -60.0, 60.0)))

    def _score_one(self, text_part: float, extra: np.ndarray) -> float:
        t = self.head.scale * (text_part + float(extra.sum()) + self.head.bias) + self.head.shift
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, t))))

    def score_now(self, conv: Conversation) -> float:
        return self._score_one(*self._parts_one(conv))

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        """The head's scores, none declined (offline evaluation and training)."""
        return self._scores(*self._parts(convs)).tolist() if convs else []

    def score_with_reasons(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        """The score, and what moved the prediction most: the embedding (what the text is about) and the
        named features, each with its signed share of the prediction in the head's units."""
        text_part, extra = self._parts_one(conv)
        parts = [("what the text is about", text_part), *zip(self._names, extra.tolist(), strict=True)]
        moved = sorted((p for p in parts if abs(p[1]) >= 0.02), key=lambda p: -abs(p[1]))[:top]
        return self._score_one(text_part, extra), tuple(f"{name} ({c:+.2f})" for name, c in moved)

    async def score(self, conv: Conversation) -> float:
        """Concurrent callers share one batch: the requests that arrive before the loop's next turn are
        scored together (`score_batch`)."""
        self._decline_if_short(classifier_text(conv))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((conv, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            scores = [self.score_now(batch[0][0])] if len(batch) == 1 else self.score_batch([c for c, _ in batch])
        except Exception as exc:  # every waiter hears of it; the pipeline falls through to its next classifier
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for (_, f), s in zip(batch, scores, strict=True):
            if not f.done():
                f.set_result(s)
