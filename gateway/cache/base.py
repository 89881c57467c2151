"""The two cache roles (an exact store and a vector index) and what a cache entry holds."""

from __future__ import annotations

from typing import Protocol

import msgspec
import numpy as np

from gateway.wire import ResponseMessage, Usage


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
    similarity: float


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
    """Prompt vectors with their answers, searched within one tenant and one context scope."""

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]: ...

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int) -> None: ...

    async def clear(self, tenant: str | None) -> int: ...
