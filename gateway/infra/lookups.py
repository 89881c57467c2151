"""A lookup cached for a while that keeps working while its source (the database) is away.

    value = await cache.get(key, fetch)

A value is trusted for `ttl_s`. When the source fails or takes longer than `timeout_s`, a value seen
before is served from memory and, for `retry_s`, the source is not asked at all: an outage costs one
short wait, not one per request. A key never seen raises `SourceDown` meanwhile. Only what `keep`
accepts is cached (an unknown API key is asked for again next time).

Once the source has failed, a value seen before never waits on it again until it has answered: it is
served at once and read again in the background (one read per key at a time, itself within `timeout_s`).
Only a key never seen waits, at most `timeout_s`, once per `retry_s`: the call that times out is
abandoned (`gateway.infra.aio.within`), not awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway.infra.aio import within

K = TypeVar("K")
V = TypeVar("V")


class SourceDown(Exception):
    pass


class CachedLookup(Generic[K, V]):
    def __init__(self, ttl_s: float, timeout_s: float = 0.5, retry_s: float = 2.0, max_entries: int = 10_000,
                 keep: Callable[[V], bool] = lambda v: True) -> None:
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.max_entries = max_entries
        self.keep = keep
        self._entries: dict[K, tuple[float, V]] = {}
        self._down_until = 0.0  # 0: the source answered last time; else it failed, and is not asked until then
        self._refreshing: dict[K, asyncio.Task[None]] = {}
        self._forgets = 0  # a background read that began before a `forget` does not keep what it read

    @property
    def source_up(self) -> bool:
        return time.monotonic() >= self._down_until

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if hit is not None and self._down_until:  # the source failed and has not answered since
            if now >= self._down_until:
                self._refresh(key, fetch)
            return hit[1]
        try:
            if now < self._down_until:
                raise SourceDown("the source failed moments ago")
            value = await within(fetch(), self.timeout_s)
        except Exception as exc:  # unreachable or too slow: what was seen before keeps working
            if now >= self._down_until:
                self._down_until = now + self.retry_s
            if hit is not None:
                return hit[1]
            raise SourceDown(f"{type(exc).__name__}: {exc}") from None
        self._store(key, value, now)
        return value

    def _store(self, key: K, value: V, now: float) -> None:
        self._down_until = 0.0
        if self.keep(value):
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now, value)
        else:
            self._entries.pop(key, None)

    def _refresh(self, key: K, fetch: Callable[[], Awaitable[V]]) -> None:
        """Read a served-from-memory key again in the background; the caller does not wait for it."""
        if key in self._refreshing:
            return
        self._down_until = time.monotonic() + self.retry_s  # the other keys wait for this probe's outcome

        async def refresh() -> None:
            forgets = self._forgets
            try:
                with contextlib.suppress(Exception):  # still away: served from memory, tried after retry_s
                    value = await within(fetch(), self.timeout_s)
                    if self._forgets == forgets:
                        self._store(key, value, time.monotonic())
                    else:
                        self._down_until = 0.0
            finally:
                self._refreshing.pop(key, None)

        self._refreshing[key] = asyncio.get_running_loop().create_task(refresh(), name="lookup-refresh")

    def forget(self, key: K) -> None:
        self._forgets += 1
        self._entries.pop(key, None)

    def forget_where(self, test: Callable[[V], bool]) -> None:
        self._forgets += 1
        for k in [k for k, (_, v) in self._entries.items() if test(v)]:
            del self._entries[k]
