"""The two cache roles (an exact store and a vector index), what a cache entry holds, and the two encoders
the semantic lookup reads: a cheap static one the index is searched with, and the sentence encoder
(MiniLM) that confirms a candidate (gateway/cache/service.py says how they are used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
import numpy as np

from gateway.vocab.wire import ResponseMessage, Usage


class CachedAnswer(msgspec.Struct, frozen=True):
    message: ResponseMessage
    finish_reason: str | None
    usage: Usage
    backend: str
    provider: str
    tier: str | None
    prompt: str
    created: int


class Candidate(msgspec.Struct, frozen=True):
    prompt: str
    payload: bytes
    similarity: float  # as the index computes it (the static embedding's cosine); the service swaps in MiniLM's
    key: str = ""      # the entry's id in its index, to attach its `confirm` vector to later
    confirm: np.ndarray | None = None  # the entry's MiniLM vector, once a lookup has computed it


answer_encoder = msgspec.json.Encoder()  # JSON, not msgpack: search results come back as text
answer_decoder = msgspec.json.Decoder(CachedAnswer)


class ExactStore(Protocol):
    """Whole answers by exact key, with a time to live (Redis keys, or a dict in this process)."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def clear(self, tenant: str | None) -> int: ...

    async def aclose(self) -> None: ...


class VectorIndex(Protocol):
    """Prompt vectors (the static embedding's) with their answers, searched within one tenant and one context
    scope. An entry may also carry its prompt's MiniLM vector (`confirm`), stored with it or attached later."""

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]: ...

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int, confirm: np.ndarray | None = None) -> None: ...

    async def attach(self, key: str, confirm: np.ndarray) -> None:
        """Keep `confirm` on the entry `key` (nothing when it has expired meanwhile)."""
        ...

    async def clear(self, tenant: str | None) -> int: ...


class StaticEncoder(Protocol):
    """The cheap first stage (router_core.static_embed.StaticEmbedder): a unit vector, inline, no model pass."""

    dim: int
    max_chars: int  # a text is cut to this many characters before tokenizing

    def embed(self, text: str) -> np.ndarray: ...

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word pieces (MiniLM's tokenizer), as `pool_one` reads them."""
        ...

    def pool_one(self, ids: Sequence[int]) -> np.ndarray:
        """The unit vector of one text's word pieces (`embed` is `pool_one(token_ids([text])[0])`)."""
        ...


class SentenceEncoder(Protocol):
    """The confirming encoder (router_core.embedder.Embedder, MiniLM): unit vectors, off the event loop and
    micro-batched (texts asked for together share a forward pass)."""

    dim: int
    device: str
    backend: str
    max_tokens: int  # the word pieces it reads of a text (MiniLM: 254, its 256 with the two markers)

    async def embed(self, text: str) -> np.ndarray: ...
