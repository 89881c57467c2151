"""Changes to keys and tenants, told to every gateway process that shares the Redis (pub/sub).

    changes.listen(auth.on_change)            # called with (kind, id): ("key", key id), ("tenant", name)
    await changes.announce("key", key_id)     # here at once, and to the others through Redis

Each process keeps keys and tenant limits in memory for `auth.key_cache_ttl_s`; an announced change
drops them from every process's memory as soon as the message arrives (milliseconds), so a PATCHed
limit, a revocation or a rotation's grace applies everywhere at once. A message sent while a process
was not subscribed is lost to it: on each (re)subscription the listeners hear ("*", "*") and forget
everything. Without Redis, or while it is unreachable, the bound is the cache's TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.infra.aio import within

log = logging.getLogger("gateway.changes")
CHANNEL = "smr:changes"
Listener = Callable[[str, str], None]


class ChangeFeed:
    def __init__(self, client: aioredis.Redis | None, timeout_s: float = 0.5, retry_s: float = 1.0) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _apply(self, kind: str, ident: str) -> None:
        for listener in self._listeners:
            listener(kind, ident)

    async def announce(self, kind: str, ident: str) -> None:
        self._apply(kind, ident)
        if self.client is None:
            return
        try:
            await within(self.client.publish(CHANNEL, f"{kind}:{ident}"), self.timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("changes: cannot tell other gateway processes about %s %s (%s); they see it within "
                        "auth.key_cache_ttl_s", kind, ident, type(exc).__name__)

    def start(self) -> None:
        """Subscribe in the background (needs a running loop); nothing to do without Redis."""
        if self.client is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self.client is not None
        down = False
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self._apply("*", "*")  # whatever was announced while not subscribed
                if down:
                    log.info("changes: subscribed again")
                down = False
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        data = msg["data"]
                        kind, _, ident = (data.decode() if isinstance(data, bytes) else str(data)).partition(":")
                        self._apply(kind, ident)
            except (RedisError, OSError) as exc:
                if not down:
                    log.warning("changes: not subscribed (%s); changes made elsewhere wait for the cache TTL",
                                type(exc).__name__)
                down = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
