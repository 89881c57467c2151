"""The `difficulty` classifier: the learned difficulty model (`router_core.difficulty`) on an embedding of
the conversation's user turns plus named features read off its token ids.

Two paths, one head format. `DifficultyClassifier`, the default on CPU, reads a static embedding: all
on the CPU in well under 2 ms, one conversation at a time (`score_now`, no task scheduled: a path of
sets and dicts, no array bookkeeping) or many at once (`score_batch`: the embedding and the features of
the whole batch are a few numpy operations over its token ids). `EncoderDifficultyClassifier`, the
transformer path and the default where a GPU is present, reads MiniLM's own sentence embedding from
the shared `Embedder` (micro-batched off the event loop; the semantic cache's embedding of the same
text is reused) with its own head (`difficulty_head_minilm.json`).

The whole conversation counts: its last three user turns are scored together (a second turn with its
first), and the number of turns is a feature. A conversation shorter than the shortest prompts the head
was trained on is declined (`Abstain`): the pipeline's next classifier answers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from router_core.classifiers.base import ENCODER, Abstain, Classifier, Scored
from router_core.classifiers.embedding import classifier_text
from router_core.difficulty import HEAD_PATHS, DifficultyHead, load_head
from router_core.static_embed import StaticEmbedder, Tokens
from router_core.token_features import TokenFeatures, describe
from router_core.types import Conversation

if TYPE_CHECKING:
    from router_core.embedder import Embedder


def user_turns(conv: Conversation) -> int:
    return max(1, sum(1 for t in conv.turns if t.role == "user"))


class _Head:
    """The head as arrays, once (a decision is then two dot products), the named features' tokenizer,
    and what both paths share: each feature's share of the prediction, the score, the reasons line and
    the short-prompt decline."""

    name = "difficulty"
    reads = ""   # the embedding its text part reads: a head must have been trained on it

    def __init__(self, head: DifficultyHead, embedder: StaticEmbedder | None) -> None:
        if head.embedding != self.reads:
            other = "EncoderDifficultyClassifier" if head.embedding == "minilm" else "DifficultyClassifier"
            raise ValueError(f"the head was trained on the {head.embedding} embedding, and {type(self).__name__} "
                             f"reads the {self.reads} one ({other} reads {head.embedding}; "
                             "routing.difficulty_embedding chooses)")
        self.head = head
        self.embedder = embedder or StaticEmbedder()   # its tokenizer is MiniLM's: the features read its ids
        self.features = TokenFeatures(self.embedder.tokenizer)
        w = np.asarray(head.weights, dtype=np.float64)
        n = len(head.feature_names)
        self._w_text, self._w_extra = w[:-n], w[-n:]
        self._names = list(head.feature_names)
        sc = head.scaling   # `Scaling.apply` times the weights, its arrays made once
        self._lo, self._hi, self._mean = np.asarray(sc.lo), np.asarray(sc.hi), np.asarray(sc.mean)
        self._per_unit = self._w_extra / np.asarray(sc.std)
        # Shorter than anything it was trained on (greetings, "go on" alone): the head declines, the
        # pipeline's next classifier (the heuristic, built for those) answers.
        self.shortest = math.floor(math.expm1(head.scaling.lo[self._names.index("log_chars")]))

    @property
    def label(self) -> str:
        """The name with what it reads (start-up log): the paths answer under one name."""
        return f"{self.name} (on the {self.head.embedding} embedding)"

    def _decline_if_short(self, text: str) -> None:
        if len(text) < self.shortest:
            raise Abstain(f"shorter than the {self.shortest} characters of the shortest prompts it was trained on")

    def _shares(self, extra: np.ndarray) -> np.ndarray:
        """Each named feature's share of the prediction (one row or many)."""
        return (np.clip(extra, self._lo, self._hi) - self._mean) * self._per_unit

    def _batch(self, convs: Sequence[Conversation]) -> tuple[list[str], Tokens, np.ndarray]:
        """The conversations' texts, their tokens (one tokenizing) and their named features, unscaled."""
        texts = [classifier_text(c) for c in convs]
        tokens = self.embedder.tokenize(texts)
        return texts, tokens, self.features.compute(texts, tokens, [user_turns(c) for c in convs])

    def _text_vectors(self, texts: list[str], tokens: Tokens) -> np.ndarray:
        raise NotImplementedError

    def _parts(self, convs: Sequence[Conversation]) -> tuple[np.ndarray, np.ndarray]:
        """Per conversation, the embedding's share of the prediction and each named feature's."""
        texts, tokens, extra = self._batch(convs)
        return self._text_vectors(texts, tokens) @ self._w_text, self._shares(extra)

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        """The head's scores, none declined (offline evaluation and training; blocking on the encoder path,
        one encoder call for the batch)."""
        return self._scores(*self._parts(convs)).tolist() if convs else []

    def design(self, convs: Sequence[Conversation]) -> np.ndarray:
        """The rows the head's weights multiply (the text vector, then the scaled named features), to refit
        it on rated requests (`smr train --from-logs`; `difficulty_logits` of them are the scores' logits)."""
        texts, tokens, extra = self._batch(convs)
        return np.hstack([self._text_vectors(texts, tokens), self.head.scaling.apply(extra)])

    def _extra_one(self, text: str, conv: Conversation) -> np.ndarray:
        """The conversation's named features, unscaled (`_shares` of them enter the score)."""
        return self.features.one(text, self.embedder.token_ids([text])[0], user_turns(conv))

    def _scores(self, text_part: np.ndarray, extra: np.ndarray) -> np.ndarray:
        t = self.head.scale * (text_part + extra.sum(axis=1) + self.head.bias) + self.head.shift
        return 1.0 / (1.0 + np.exp(-np.clip(t, -60.0, 60.0)))

    def _score_one(self, text_part: float, extra: np.ndarray) -> float:
        t = self.head.scale * (text_part + float(extra.sum()) + self.head.bias) + self.head.shift
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, t))))

    def _explained(self, text_part: float, extra: np.ndarray, top: int) -> tuple[float, tuple[str, ...]]:
        """The score, and what moved the prediction most: the embedding (what the text is about) and the
        named features (`extra`, unscaled), each with this prompt's value in words and its signed share of
        the prediction in the head's units, against the average prompt trained on: `answer options: none
        (-0.13)`."""
        shares = self._shares(extra)
        parts = [(-1, text_part), *enumerate(shares.tolist())]
        moved = sorted((p for p in parts if abs(p[1]) >= 0.02), key=lambda p: -abs(p[1]))[:top]
        what = lambda i: "what the text is about" if i < 0 else describe(self._names[i], float(extra[i]))  # noqa: E731
        return self._score_one(text_part, shares), tuple(f"{what(i)} ({c:+.2f})" for i, c in moved)


class DifficultyClassifier(_Head, Classifier):
    """The static path: everything on the CPU, inline (the default without a GPU)."""

    reads = "static"

    def __init__(self, head: DifficultyHead | None = None, embedder: StaticEmbedder | None = None) -> None:
        super().__init__(head or load_head(), embedder)
        self._pending: list[tuple[Conversation, asyncio.Future[float]]] = []

    def _text_vectors(self, texts: list[str], tokens: Tokens) -> np.ndarray:
        return self.embedder.pool(tokens)

    def _parts_one(self, conv: Conversation) -> tuple[float, np.ndarray]:
        """The embedding's share of the prediction and the named features (unscaled) for one conversation,
        on the one-text paths (no batch bookkeeping)."""
        self._decline_if_short(classifier_text(conv))
        return self.parts(conv)

    def parts(self, conv: Conversation) -> tuple[float, np.ndarray]:
        """`_parts_one` for any conversation, however short (the `tiered` classifier ranks what it is given)."""
        text = classifier_text(conv)
        ids = self.embedder.token_ids([text])[0]
        return float(self.embedder.pool_one(ids) @ self._w_text), self.features.one(text, ids, user_turns(conv))

    def score_now(self, conv: Conversation) -> Scored:
        return Scored(*self.score_with_reasons(conv))

    def score_with_reasons(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        return self._explained(*self._parts_one(conv), top)

    def ranked(self, conv: Conversation, top: int = 3) -> tuple[float, tuple[str, ...]]:
        """`score_with_reasons` for any conversation, however short (what the `tiered` classifier ranks)."""
        return self._explained(*self.parts(conv), top)

    async def score(self, conv: Conversation) -> Scored:
        """Concurrent callers share one batch: the requests that arrive before the loop's next turn are
        scored together (`score_batch`; the score alone: `score_now` says why)."""
        self._decline_if_short(classifier_text(conv))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((conv, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return Scored(await future)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            convs = [c for c, _ in batch]
            scores = [self.score_now(convs[0]).score] if len(convs) == 1 else self.score_batch(convs)
        except Exception as exc:  # every waiter hears of it; the pipeline falls through to its next classifier
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for (_, f), s in zip(batch, scores, strict=True):
            if not f.done():
                f.set_result(s)


class EncoderDifficultyClassifier(_Head, Classifier):
    """The transformer path: MiniLM's sentence embedding (from the shared, loaded `Embedder`, on the GPU
    where one is present) with the head trained on it; the named features as on the static path."""

    reads = "minilm"
    needs = frozenset({ENCODER})

    def __init__(self, encoder: Embedder, head: DifficultyHead | None = None,
                 embedder: StaticEmbedder | None = None) -> None:
        super().__init__(head or load_head(HEAD_PATHS["minilm"]), embedder)
        self.encoder = encoder

    def _text_vectors(self, texts: list[str], tokens: Tokens) -> np.ndarray:
        return np.asarray(self.encoder.encode_batch(texts), dtype=np.float64)

    async def _vector(self, conv: Conversation, text: str) -> np.ndarray:
        if conv.embedding is not None and conv.embedded_text == text:  # the semantic cache's, same text
            return np.asarray(conv.embedding, dtype=np.float64)
        return np.asarray(await self.encoder.embed(text), dtype=np.float64)

    async def score(self, conv: Conversation) -> Scored:
        """The score and why (the three parts that moved it most), awaiting the encoder."""
        text = classifier_text(conv)
        self._decline_if_short(text)
        vector = await self._vector(conv, text)
        return Scored(*self._explained(float(vector @ self._w_text), self._extra_one(text, conv), 3))
