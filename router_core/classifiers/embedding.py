"""Embedding classifier: a sentence-transformers encoder plus a small trained logistic head.

Features: the normalised embedding of the conversation's user text and standardised length and
structure signals of that text (`router_core.features.structure`). The head's weights live in
`embedding_head.json` beside this file (trained by `smr train`; `embedding_head.md` says on what).
The encoder runs off the event loop, micro-batched (`router_core.embedder.Embedder`), and an
embedding already computed for the request (the semantic cache's) is reused, never computed twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from router_core.classifiers.base import ENCODER, Classifier, Scored
from router_core.embedder import Embedder
from router_core.features import STRUCTURE_FEATURES, structure
from router_core.types import Conversation

HEAD_PATH = Path(__file__).with_name("embedding_head.json")


class Head(msgspec.Struct, frozen=True):
    weights: list[float]          # one per embedding dimension, then one per structure feature
    bias: float
    feature_names: list[str]      # router_core.features.STRUCTURE_FEATURES when trained
    feature_mean: list[float]
    feature_std: list[float]
    target: str = "needs the strong model (cheap fails, strong succeeds)"
    c: float = 1.0
    length_boost: float = 0.0     # already folded into the log_chars weight; kept to say how it was chosen
    trained_on: list[str] = []
    cv: dict[str, float] = {}

    def design(self, vector: np.ndarray, text: str) -> np.ndarray:
        extra = (np.asarray(structure(text)) - self.feature_mean) / self.feature_std
        return np.concatenate([np.asarray(vector, dtype=np.float64), extra])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The logit of each row of `design` (refitting on ratings works on these rows)."""
        return np.asarray(x @ np.asarray(self.weights) + self.bias)

    def logit(self, vector: np.ndarray, text: str) -> float:
        return float(np.dot(self.weights, self.design(vector, text)) + self.bias)

    def score(self, vector: np.ndarray, text: str) -> float:
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, self.logit(vector, text)))))


def load_head(path: Path = HEAD_PATH) -> Head:
    head = msgspec.json.decode(path.read_bytes(), type=Head)
    if tuple(head.feature_names) != STRUCTURE_FEATURES:
        raise ValueError(f"{path}: trained on features {head.feature_names}, this version computes "
                         f"{list(STRUCTURE_FEATURES)}; retrain it with `smr train`")
    return head


def classifier_text(conv: Conversation) -> str:
    """What the head sees: the user turns (the last one last), as in training prompts."""
    users = [t.text for t in conv.turns if t.role == "user"]
    return "\n".join(users[-3:]) if users else conv.all_text


class EmbeddingClassifier(Classifier):
    name = "embedding"
    needs = frozenset({ENCODER})

    def __init__(self, embedder: Embedder, head: Head | None = None) -> None:
        self.embedder = embedder
        self.head = head or load_head()

    async def score(self, conv: Conversation) -> Scored:
        text = classifier_text(conv)
        if conv.embedding is not None and conv.embedded_text == text:
            vector = conv.embedding
        else:
            vector = await self.embedder.embed(text)
        return Scored(self.head.score(np.asarray(vector, dtype=np.float32), text))

    def score_batch(self, convs: Sequence[Conversation]) -> list[float]:
        """Blocking, for offline use (`smr classify`, `smr eval`): one forward pass per batch."""
        texts = [classifier_text(c) for c in convs]
        vectors = self.embedder.encode_batch(texts)
        return [self.head.score(v, t) for v, t in zip(vectors, texts, strict=True)]
