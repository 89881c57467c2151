"""A static embedding: each token a fixed vector, a text the normalised mean of its tokens' vectors.

Distilled offline from the shipped MiniLM with model2vec (`python -m bench.studies.distill_static`:
nothing downloaded), PCA to 128 dimensions, stored int8 with a scale per token in
`router_core/classifiers/static_minilm/` beside the distilled tokenizer. Embedding a prompt is a
tokenizer step and a table look-up: tens of microseconds instead of a transformer's tens of milliseconds.

Tokenizing is the larger part, so plain ASCII text (most prompts) skips the tokenizer: BERT's
pre-tokenizer splits on whitespace first and tokenizes each whitespace-separated chunk on its own, so
a lower-cased chunk's ids can be remembered and reused (a bounded cache per embedder). Anything else
(non-ASCII, control characters, chunks not yet seen) goes through the tokenizer itself; the ids are the
same either way (a test compares them on every shared prompt).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import msgspec
import numpy as np

STATIC_DIR = Path(__file__).resolve().parent / "classifiers" / "static_minilm"
MAX_TOKENS = 512
MAX_CHARS = 8 * MAX_TOKENS   # the text is cut before tokenizing, as model2vec does
CACHE_WORDS = 50_000         # chunks remembered per embedder; the cache empties when full
CACHE_WORD_CHARS = 32        # longer chunks are tokenized each time, never remembered
# ASCII the BERT normaliser leaves alone apart from lower-casing (no control characters but \t \n \r).
_not_plain = re.compile(r"[^\x20-\x7e\t\n\r]")


class Tokens(msgspec.Struct, frozen=True):
    """A batch's token ids end to end, `starts[i]:starts[i + 1]` being text i's (at most MAX_TOKENS)."""
    ids: np.ndarray      # int64
    starts: np.ndarray   # int64, len(texts) + 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def owner(self) -> np.ndarray:
        """For each token, the index of its text."""
        return np.repeat(np.arange(len(self.starts) - 1), self.counts)


class StaticEmbedder:
    def __init__(self, folder: Path = STATIC_DIR) -> None:
        from tokenizers import Tokenizer

        data = np.load(folder / "embeddings.npz")
        self.table = data["int8"].astype(np.float32) * data["scale"][:, None].astype(np.float32)
        self.dim = int(self.table.shape[1])
        self.max_chars = MAX_CHARS  # a text is cut to this before tokenizing
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._chunks: dict[str, list[int]] = {}
        # Without character offsets where the tokenizers version has it (the ids are the same, faster).
        fast = getattr(self.tokenizer, "encode_batch_fast", None)
        self._encode = (lambda texts: fast(texts, add_special_tokens=False)) if fast else (
            lambda texts: self.tokenizer.encode_batch(texts, add_special_tokens=False))

    def _ids_plain(self, text: str) -> list[int]:
        chunks = text.lower().split()
        cache = self._chunks
        try:   # every chunk seen before: one pass in C
            return list(chain.from_iterable(map(cache.__getitem__, chunks)))[:MAX_TOKENS]
        except KeyError:
            pass
        if len(cache) > CACHE_WORDS:
            cache.clear()
        missing = [c for c in dict.fromkeys(chunks) if c not in cache]
        # One chunk at a time: a batch goes to the tokenizer's thread pool, which for the few new chunks of a
        # prompt cost 33 us of CPU against 6 us for two (threads woken and spinning), and more CPU at every size
        # measured (200 chunks: 1,049 us against 760 us one by one).
        encode = self.tokenizer.encode
        cache.update((c, encode(c, add_special_tokens=False).ids) for c in missing)
        try:
            return list(chain.from_iterable(map(cache.__getitem__, chunks)))[:MAX_TOKENS]
        finally:   # long chunks are used once, never kept
            for c in missing:
                if len(c) > CACHE_WORD_CHARS:
                    del cache[c]

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        cut = [t[:MAX_CHARS] for t in texts]
        other = [i for i, t in enumerate(cut) if _not_plain.search(t)]
        skip = set(other)
        out: list[list[int]] = [[] if i in skip else self._ids_plain(t) for i, t in enumerate(cut)]
        for i, e in zip(other, self._encode([cut[i] for i in other]) if other else [], strict=True):
            out[i] = e.ids[:MAX_TOKENS]
        return out

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        ids = self.token_ids(texts)
        starts = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(list(map(len, ids)), out=starts[1:])
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(starts[-1]))
        return Tokens(flat, starts)

    def pool(self, tokens: Tokens) -> np.ndarray:
        """Each text's normalised mean token vector (zeros for a text without tokens)."""
        n, starts = len(tokens.starts) - 1, tokens.starts.tolist()
        rows = np.take(self.table, tokens.ids, axis=0)   # one gather; numpy's reduceat over rows is slow
        out = np.zeros((n, self.dim), dtype=np.float32)
        for i in range(n):
            if starts[i + 1] > starts[i]:
                out[i] = rows[starts[i]:starts[i + 1]].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def pool_one(self, ids: Sequence[int]) -> np.ndarray:
        """`pool` for one text's ids."""
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        v = np.take(self.table, ids, axis=0).sum(axis=0)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else v

    def embed(self, text: str) -> np.ndarray:
        return self.pool_one(self.token_ids([text])[0])

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.pool(self.tokenize(texts))
