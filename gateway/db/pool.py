"""The connection pool every store shares, made to survive a database restart.

A restart (even of a second) kills every connection the pool holds, and psycopg's pool hands an idle
connection out without looking at it: each dead one failed one request, on an idle replica minutes later
too. Here a connection is checked (an empty query) when it is taken; the first dead one found drains the
pool, because its siblings died with it, and the caller gets a new connection. While the database is
really away, a call fails with `DatabaseUnavailable` (503 in the OpenAI error shape), never a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.errors import DatabaseUnavailable

log = logging.getLogger("gateway.db")
# psycopg raises OperationalError when the server is away or ends the session (AdminShutdown, a lost socket);
# InterfaceError when a connection was closed under it.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class Pool(AsyncConnectionPool):
    """`AsyncConnectionPool` whose connections are checked on checkout and whose failures to reach the
    database are `DatabaseUnavailable`."""

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 5.0) -> None:
        super().__init__(url, min_size=1, max_size=max_size, open=False, timeout=timeout, check=self._alive,
                         name="gateway")
        self._drained = 0.0

    async def _alive(self, conn: psycopg.AsyncConnection) -> None:
        try:
            await self.check_connection(conn)
        except Exception:
            # The others were opened to the same server: if one is dead they all are. Drained once per
            # second at most (several requests find dead connections at the same moment).
            now = time.monotonic()
            if now - self._drained > 1.0:
                self._drained = now
                log.warning("database: a pooled connection was dead (a restart?); replacing them all")
                await self.drain()
            raise

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        try:
            async with super().connection(timeout) as conn:
                yield conn
        except UNREACHABLE as exc:
            raise DatabaseUnavailable(f"the database cannot be reached right now ({type(exc).__name__}); "
                                      "try again shortly") from exc
