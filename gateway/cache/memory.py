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


class _Entry:
    __slots__ = ("confirm", "expires", "key", "payload", "prompt", "vector")

    def __init__(self, key: str, expires: float, vector: np.ndarray, prompt: str, payload: bytes,
                 confirm: np.ndarray | None) -> None:
        self.key, self.expires, self.vector, self.prompt, self.payload = key, expires, vector, prompt, payload
        self.confirm = confirm


class MemoryVectorIndex:
    """One dimension per index (the first vector added or searched fixes it): a vector of another size, such
    as an older version's MiniLM vector, is refused rather than compared."""

    def __init__(self, max_entries: int = 50_000, dim: int | None = None) -> None:
        self.max_entries = max_entries
        self.dim = dim
        self._buckets: dict[tuple[str, str], list[_Entry]] = {}
        self._by_key: dict[str, _Entry] = {}
        self._next = 0

    def _check(self, vector: np.ndarray) -> None:
        if self.dim is None:
            self.dim = int(vector.shape[-1])
        elif vector.shape[-1] != self.dim:
            raise ValueError(f"this index holds {self.dim}-dimensional vectors, not {vector.shape[-1]}")

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        self._check(vector)
        now = time.monotonic()
        bucket = self._buckets.get((tenant, scope), [])
        entries = [e for e in bucket if e.expires >= now]
        if len(entries) < len(bucket):
            self._buckets[(tenant, scope)] = entries
            for e in bucket:
                if e.expires < now:
                    self._by_key.pop(e.key, None)
        if not entries:
            return []
        sims = np.stack([e.vector for e in entries]) @ vector
        best = np.argsort(-sims)[:k]
        return [Candidate(entries[i].prompt, entries[i].payload, float(sims[i]), entries[i].key, entries[i].confirm)
                for i in best]

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int, confirm: np.ndarray | None = None) -> None:
        self._check(vector)
        bucket = self._buckets.setdefault((tenant, scope), [])
        if len(bucket) >= self.max_entries:
            self._by_key.pop(bucket.pop(0).key, None)
        self._next += 1
        entry = _Entry(f"{tenant}:{self._next}", time.monotonic() + ttl_s, vector.astype(np.float32), prompt,
                       payload, None if confirm is None else confirm.astype(np.float32))
        bucket.append(entry)
        self._by_key[entry.key] = entry

    async def attach(self, key: str, confirm: np.ndarray) -> None:
        entry = self._by_key.get(key)
        if entry is not None:
            entry.confirm = confirm.astype(np.float32)

    async def clear(self, tenant: str | None) -> int:
        if tenant is None:
            n = sum(len(v) for v in self._buckets.values())
            self._buckets.clear()
            self._by_key.clear()
            return n
        n = 0
        for k in [k for k in self._buckets if k[0] == tenant]:
            for e in self._buckets.pop(k):
                self._by_key.pop(e.key, None)
                n += 1
        return n
