"""The connection pool every store shares, made to survive a database restart or freeze.

A restart (even of a second) kills every connection the pool holds, and psycopg's pool hands an idle
connection out without looking at it: each dead one failed one request, on an idle replica minutes later
too. Here a connection is checked (an empty query) when it is taken; the first dead one found drains the
pool, because its siblings died with it, and the caller gets a new connection.

A frozen database (TCP open, no answer) never fails that check, it just never answers: the check has a
client-side deadline (`check_timeout_s`), and a database that misses it, or refuses a new connection, is
marked down for `retry_s`. Meanwhile every call fails at once instead of each waiting on its own (a key
lookup and the tenant-limits lookup of the same request waited 0.5 s each, in series), and a call already
waiting for a connection is answered as soon as the database is marked down. While the database is
away, a call fails with `DatabaseUnavailable` (503 in the OpenAI error shape), never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.infra.aio import within
from gateway.vocab.errors import DatabaseUnavailable

log = logging.getLogger("gateway.db")
# psycopg raises OperationalError when the server is away or ends the session (AdminShutdown, a lost socket);
# InterfaceError when a connection was closed under it.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class Pool(AsyncConnectionPool):
    """`AsyncConnectionPool` whose connections are checked on checkout, within a deadline, and whose
    failures to reach the database are `DatabaseUnavailable`."""

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 5.0, check_timeout_s: float = 1.0,
                 retry_s: float = 2.0, connect_timeout_s: int = 3) -> None:
        super().__init__(url, min_size=1, max_size=max_size, open=False, timeout=timeout, check=self._alive,
                         name="gateway", kwargs={"connect_timeout": connect_timeout_s})
        self.check_timeout_s = check_timeout_s
        self.retry_s = retry_s
        self._drained = 0.0
        self._down_until = 0.0
        self._went_down = asyncio.Event()
        self._returning: set[asyncio.Future[psycopg.AsyncConnection]] = set()

    @property
    def up(self) -> bool:
        """False for `retry_s` after the database missed a deadline or refused a connection."""
        return time.monotonic() >= self._down_until

    def mark_down(self, why: str) -> None:
        if self.up:
            log.warning("database: %s; calls fail at once for the next %.1f s", why, self.retry_s)
        self._down_until = time.monotonic() + self.retry_s
        went_down, self._went_down = self._went_down, asyncio.Event()
        went_down.set()  # wakes the calls waiting for a connection

    async def _alive(self, conn: psycopg.AsyncConnection) -> None:
        try:
            await within(self.check_connection(conn), self.check_timeout_s)
        except TimeoutError:
            # Frozen, not dead: the connection (mid-query now) is closed by the pool when it comes back.
            self.mark_down(f"a pooled connection did not answer within {self.check_timeout_s} s (frozen?)")
            raise psycopg.OperationalError("the database did not answer the connection check in time") from None
        except Exception:
            # The others were opened to the same server: if one is dead they all are. Drained once per
            # second at most (several requests find dead connections at the same moment).
            now = time.monotonic()
            if now - self._drained > 1.0:
                self._drained = now
                log.warning("database: a pooled connection was dead (a restart?); replacing them all")
                await self.drain()
            raise

    async def _connect(self, timeout: float | None = None) -> psycopg.AsyncConnection:
        try:
            conn = await super()._connect(timeout)
        except Exception as exc:
            self.mark_down(f"cannot connect ({type(exc).__name__})")
            raise
        self._down_until = 0.0  # it answers again
        return conn

    async def _checkout(self, timeout: float | None) -> psycopg.AsyncConnection:
        """A checked connection, or DatabaseUnavailable as soon as the database is marked down."""
        if not self.up:
            raise DatabaseUnavailable("the database did not answer moments ago (down or frozen); try again shortly")
        getting = asyncio.ensure_future(self.getconn(timeout))
        downed = asyncio.ensure_future(self._went_down.wait())
        handed = False
        try:
            await asyncio.wait({getting, downed}, return_when=asyncio.FIRST_COMPLETED)
            if getting.done():
                conn = getting.result()
                handed = True
                return conn
            raise DatabaseUnavailable("the database does not answer (down or frozen); try again shortly")
        finally:
            downed.cancel()
            if not handed:  # abandoned (or failed): a connection it gets after all goes back to the pool
                getting.cancel()
                self._returning.add(getting)
                getting.add_done_callback(self._give_back)

    def _give_back(self, task: asyncio.Future[psycopg.AsyncConnection]) -> None:
        self._returning.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        putting = asyncio.ensure_future(self.putconn(task.result()))
        self._returning.add(putting)  # type: ignore[arg-type]
        putting.add_done_callback(self._returning.discard)  # type: ignore[arg-type]

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        try:
            conn = await self._checkout(timeout)
        except UNREACHABLE as exc:  # a PoolTimeout may be a busy pool, not a database away: not marked down
            raise _unavailable(exc) from exc
        try:
            async with conn:  # commits (or rolls back on an error), as psycopg's pool does; a pooled one stays open
                yield conn
        except UNREACHABLE as exc:
            raise _unavailable(exc) from exc
        finally:
            await self.putconn(conn)


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"the database cannot be reached right now ({type(exc).__name__}); try again shortly")


async def ping(pool: AsyncConnectionPool, timeout_s: float) -> str:
    """"ok", or "unreachable: <why>" when `SELECT 1` does not come back within `timeout_s`."""

    async def select_one() -> None:
        async with pool.connection(timeout=timeout_s) as conn:
            await conn.execute("SELECT 1")

    try:
        await within(select_one(), timeout_s)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
