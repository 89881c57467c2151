"""The in-process store: the same contract as Redis, for one process only (the last fallback)."""

from __future__ import annotations

import time

import numpy as np

from gateway.cache.base import Candidate


class MemoryStore:
    name = "memory"
    semantic = True

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._exact: dict[str, tuple[float, bytes]] = {}
        self._vectors: dict[tuple[str, str], list[tuple[float, np.ndarray, str, bytes]]] = {}

    async def get(self, key: str) -> bytes | None:
        hit = self._exact.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._exact[key]
            return None
        return hit[1]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if len(self._exact) >= self.max_entries:
            self._exact.pop(next(iter(self._exact)))
        self._exact[key] = (time.monotonic() + ttl_s, value)

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        now = time.monotonic()
        entries = [e for e in self._vectors.get((tenant, scope), []) if e[0] >= now]
        self._vectors[(tenant, scope)] = entries
        if not entries:
            return []
        sims = np.stack([e[1] for e in entries]) @ vector
        best = np.argsort(-sims)[:k]
        return [Candidate(entries[i][2], entries[i][3], float(sims[i])) for i in best]

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int) -> None:
        bucket = self._vectors.setdefault((tenant, scope), [])
        if len(bucket) >= self.max_entries:
            bucket.pop(0)
        bucket.append((time.monotonic() + ttl_s, vector.astype(np.float32), prompt, payload))

    async def clear(self, tenant: str | None) -> int:
        if tenant is None:
            n = len(self._exact) + sum(len(v) for v in self._vectors.values())
            self._exact.clear()
            self._vectors.clear()
            return n
        n = 0
        for key in [k for k in self._exact if k.startswith(f"smr:x:{tenant}:")]:
            del self._exact[key]
            n += 1
        for vkey in [k for k in self._vectors if k[0] == tenant]:
            n += len(self._vectors.pop(vkey))
        return n

    async def count(self) -> int:
        return len(self._exact) + sum(len(v) for v in self._vectors.values())

    async def aclose(self) -> None:
        return None
