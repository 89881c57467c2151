"""The in-process cache roles: the same contracts as Redis, for one process only (the last fallback)."""

from __future__ import annotations

import time

import numpy as np

from gateway.cache.base import Candidate


class MemoryExactStore:
    name = "memory"

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._entries[key]
            return None
        return hit[1]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + ttl_s, value)

    async def clear(self, tenant: str | None) -> int:
        if tenant is None:
            n = len(self._entries)
            self._entries.clear()
            return n
        doomed = [k for k in self._entries if k.startswith(f"smr:x:{tenant}:")]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    async def aclose(self) -> None:
        return None


class MemoryVectorIndex:
    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._buckets: dict[tuple[str, str], list[tuple[float, np.ndarray, str, bytes]]] = {}

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        now = time.monotonic()
        entries = [e for e in self._buckets.get((tenant, scope), []) if e[0] >= now]
        self._buckets[(tenant, scope)] = entries
        if not entries:
            return []
        sims = np.stack([e[1] for e in entries]) @ vector
        best = np.argsort(-sims)[:k]
        return [Candidate(entries[i][2], entries[i][3], float(sims[i])) for i in best]

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int) -> None:
        bucket = self._buckets.setdefault((tenant, scope), [])
        if len(bucket) >= self.max_entries:
            bucket.pop(0)
        bucket.append((time.monotonic() + ttl_s, vector.astype(np.float32), prompt, payload))

    async def clear(self, tenant: str | None) -> int:
        if tenant is None:
            n = sum(len(v) for v in self._buckets.values())
            self._buckets.clear()
            return n
        return sum(len(self._buckets.pop(k)) for k in [k for k in self._buckets if k[0] == tenant])
