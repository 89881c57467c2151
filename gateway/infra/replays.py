"""Budget settlements that could not reach Redis, tried again until they land.

A request settles its hold (or, served while Redis was unreachable, just its spend) when it ends. When
that call fails (Redis stalled or down), the settlement waits here and is retried every `interval_s`
in order, so the spend is counted within about that long of Redis answering again. The settle script
counts each hold id once, so a first try that ran late and its retry do not both count. A settlement
still waiting after `give_up_s` (kept under the script's once-only mark) is dropped with a warning;
so is the oldest when more than `max_pending` wait. What waits here is lost if this process dies:
the hold then lapses on its own, and the spend is in the request log, read when Redis loses the period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from redis.exceptions import RedisError

from gateway.infra.aio import within
from gateway.infra.limiter import SETTLED_MARK_S
from gateway.vocab.limits import BudgetCheck, Hold

log = logging.getLogger("gateway.limits")


class Pending(NamedTuple):
    budgets: list[BudgetCheck]
    hold: Hold
    actual: float
    since: float  # time.monotonic() of the first try


Settle = Callable[[list[BudgetCheck], Hold, float], Awaitable[bool]]


class Replays:
    def __init__(self, settle: Settle, timeout_s: float, interval_s: float = 1.0,
                 give_up_s: float = SETTLED_MARK_S * 0.8, max_pending: int = 100_000) -> None:
        self.settle = settle
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.give_up_s = give_up_s
        self.max_pending = max_pending
        self.replayed = 0
        self.dropped = 0
        self._pending: deque[Pending] = deque()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, budgets: list[BudgetCheck], hold: Hold, actual: float) -> None:
        if len(self._pending) >= self.max_pending:
            self._drop(self._pending.popleft(), "too many waiting")
        self._pending.append(Pending(budgets, hold, actual, time.monotonic()))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Try the waiting settlements in order; stop at the first that still fails."""
        while self._pending:
            p = self._pending[0]
            if time.monotonic() - p.since > self.give_up_s:
                self._drop(self._pending.popleft(), "too old")
                continue
            try:
                await within(self.settle(p.budgets, p.hold, p.actual), self.timeout_s)
            except (RedisError, OSError, TimeoutError):
                return
            self._pending.popleft()
            self.replayed += 1

    def _drop(self, p: Pending, why: str) -> None:
        self.dropped += 1
        log.warning("limits: a budget settlement of $%.6f on %s was dropped (%s); the request log still has it",
                    p.actual, ", ".join(f"{b.scope} {b.owner}" for b in p.budgets), why)

    async def close(self) -> None:
        """At shutdown: one last try, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        for p in list(self._pending):
            self._drop(p, "the gateway is stopping")
        self._pending.clear()
