"""`within(awaitable, seconds)`: wait for a call at most so long, without waiting on its cancellation.

`asyncio.timeout` cancels the call and then waits for it to finish cancelling. psycopg answers a
cancellation by asking the server to cancel the query; a frozen server never answers, so the caller
waited anyway (a /health check took 10 s against a frozen database). Here the call runs as its own
task: at the limit the caller gets TimeoutError at once, and the task ends on its own in the background.

The wait is one future woken by whichever comes first, the task's end or a timer: what
`asyncio.wait_for(asyncio.shield(task), seconds)` does, without the two extra futures, the callbacks
between them and the coroutine of `wait_for` (the request path calls this for each Redis round trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
_abandoned: set[asyncio.Future[Any]] = set()


def retrieved(task: asyncio.Future[Any]) -> None:
    """Its failure, if any, marked as retrieved: a task whose result nobody reads (a done callback) is not
    reported as 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()


def _settled(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    retrieved(task)


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()  # asked to stop; nobody waits for it to do so
    _abandoned.add(task)  # a reference until it ends, so it is not collected mid-way
    task.add_done_callback(_settled)


async def within(call: Awaitable[T], seconds: float) -> T:
    task = asyncio.ensure_future(call)
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = loop.call_later(seconds, wake)
    task.add_done_callback(wake)
    try:
        await woken
    except BaseException:  # the caller was cancelled
        timer.cancel()
        task.remove_done_callback(wake)
        if not task.done():
            _abandon(task)
        else:
            _settled(task)  # a failure it ended with is nobody's now: not reported as never retrieved
        raise
    timer.cancel()
    task.remove_done_callback(wake)
    if task.done():
        return task.result()  # its exception, if it failed
    _abandon(task)
    raise TimeoutError
