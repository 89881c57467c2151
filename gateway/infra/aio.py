"""`within(awaitable, seconds)`: wait for a call at most so long, without waiting on its cancellation.

`asyncio.timeout` cancels the call and then waits for it to finish cancelling. psycopg answers a
cancellation by asking the server to cancel the query; a frozen server never answers, so the caller
waited anyway (a /health check took 10 s against a frozen database). Here the call runs as its own
task: at the limit the caller gets TimeoutError at once, and the task ends on its own in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
_abandoned: set[asyncio.Future[Any]] = set()


def _settled(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a late failure is not reported as never retrieved


async def within(call: Awaitable[T], seconds: float) -> T:
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), seconds)
    except BaseException:
        if not task.done():
            task.cancel()  # asked to stop; nobody waits for it to do so
            _abandoned.add(task)  # a reference until it ends, so it is not collected mid-way
            task.add_done_callback(_settled)
        raise
