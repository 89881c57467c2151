"""A static embedding: each token a fixed vector, a text the normalised mean of its tokens' vectors.

Distilled offline from the shipped MiniLM with model2vec (`python -m bench.studies.distill_static`:
nothing downloaded), PCA to 128 dimensions, stored int8 with a scale per token in
`router_core/classifiers/static_minilm/` beside the distilled tokenizer. Embedding a prompt is a
tokenizer call and a table look-up: tens of microseconds instead of a transformer's tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

STATIC_DIR = Path(__file__).resolve().parent / "classifiers" / "static_minilm"
MAX_TOKENS = 512


class StaticEmbedder:
    def __init__(self, folder: Path = STATIC_DIR) -> None:
        from tokenizers import Tokenizer

        data = np.load(folder / "embeddings.npz")
        self.table = data["int8"].astype(np.float32) * data["scale"][:, None].astype(np.float32)
        self.dim = int(self.table.shape[1])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # Without character offsets where the tokenizers version has it (the ids are the same, faster).
        fast = getattr(self.tokenizer, "encode_batch_fast", None)
        self._encode = (lambda texts: fast(texts, add_special_tokens=False)) if fast else (
            lambda texts: self.tokenizer.encode_batch(texts, add_special_tokens=False))

    def _pool(self, ids: Sequence[int]) -> np.ndarray:
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.table[np.asarray(ids[:MAX_TOKENS])].mean(axis=0)
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def embed(self, text: str) -> np.ndarray:
        return self._pool(self._encode([text])[0].ids)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._encode(list(texts))
        return np.stack([self._pool(e.ids) for e in encodings]) if texts else np.zeros((0, self.dim), np.float32)
