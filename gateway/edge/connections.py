"""The connection guard: what one connection may hold before the app does any work for it.

One `ConnectionGuard` per server (built by `gateway.edge.server.uvicorn_options`) counts the open connections,
in all and per client address, and the bytes of the request bodies being received. The HTTP protocol
(`gateway.edge.server`) asks it at four moments and acts on the answer itself:

    (head bytes)           a request head past HEAD_MAX_BYTES: refused (400), as httptools sets no bound
    opened(conn)           a new connection: refused past server.max_connections (503) or
                           server.max_connections_per_ip (429), answered and closed at once
    reserve(conn, n)       a request head is complete and announces n body bytes (or n more bytes of a
                           chunked body came): refused (503, Retry-After) past server.max_body_bytes_in_flight
    release(conn)          the body is complete, or the connection is gone: its bytes leave the count
    closed(conn)           the connection is gone: it leaves the counts

Deadlines cost no timer per connection: each connection carries one `deadline` (loop time, 0 = none) that
the protocol sets when a request head starts (server.header_timeout_s) and when it is complete
(server.body_timeout_s), and one periodic sweep, running only while connections are open, expires the
late ones (the protocol answers 408 and closes). The same sweep hands freed body memory back to the
operating system (glibc's malloc_trim) once bodies of many megabytes have ended: glibc raises its mmap
threshold after the first big body is freed, so later bodies land on the heap and stay there otherwise.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
from collections.abc import Callable
from typing import Protocol

from gateway.vocab.settings_model import ServerSettings

log = logging.getLogger("gateway.connections")

# The most bytes of one request head (request line and headers) held: httptools' parser sets no bound of
# its own (100 MB of header lines were held until the header timeout). As Node's 16 KB and nginx's 32 KB, with
# room; a head is counted from its second read, so one read (up to 256 KB) more may come before the 400.
HEAD_MAX_BYTES = 65_536
# Freed body bytes that make a trim worth its cost (it walks the heap: about a millisecond per 100 MB).
TRIM_AFTER_BYTES = 16_000_000
# Part of the open-files limit kept for what is not a client connection (upstreams, Postgres, Redis, logs).
FD_RESERVE_SHARE = 4
FD_RESERVE_MIN = 64


class GuardedConnection(Protocol):
    """What the guard needs of a connection (the HTTP protocol of gateway.edge.server)."""

    peer: str
    deadline: float
    reserved: int

    def expire(self) -> None:
        """The connection's deadline passed: answer 408 where a request was begun, and close."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, where it is the libc
    except (OSError, AttributeError, TypeError):
        return None
    return fn  # type: ignore[no-any-return]


def connection_cap(configured: int) -> int:
    """server.max_connections, lowered to leave part of the process's open-files limit for the rest:
    a cap above the limit would let the connections take every descriptor, and then nothing is refused
    properly (accept fails) and upstream calls fail."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    fit = max(1, soft - max(FD_RESERVE_MIN, soft // FD_RESERVE_SHARE))
    if fit < configured:
        log.warning("server.max_connections %d lowered to %d to fit the open-files limit (%d)", configured, fit, soft)
    return min(configured, fit)


class ConnectionGuard:
    """The counts and the sweep of one server; see the module's docstring."""

    def __init__(self, server: ServerSettings) -> None:
        self.header_timeout_s = server.header_timeout_s
        self.body_timeout_s = server.body_timeout_s
        self.max_connections = connection_cap(server.max_connections)
        self.max_per_ip = server.max_connections_per_ip
        self.max_body_bytes = server.max_body_bytes
        self.max_in_flight = server.max_body_bytes_in_flight
        self.per_ip: dict[str, int] = {}
        self.open: set[GuardedConnection] = set()
        self.body_bytes = 0          # reserved by bodies being received
        self.freed_bytes = 0         # released since the last trim
        self.trim_due = False        # a trim is owed once no connection is open
        self.interval_s = min(1.0, max(0.05, min(self.header_timeout_s, self.body_timeout_s) / 4))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()

    # Connections
    def opened(self, conn: GuardedConnection, loop: asyncio.AbstractEventLoop) -> int:
        """0 when the connection is admitted (and counted), else the status to refuse it with."""
        if len(self.open) >= self.max_connections:
            return 503
        count = self.per_ip.get(conn.peer, 0)
        if self.max_per_ip and count >= self.max_per_ip:
            return 429
        self.per_ip[conn.peer] = count + 1
        self.open.add(conn)
        if self._sweep is None:
            self._loop = loop
            self._sweep = loop.call_later(self.interval_s, self.sweep)
        return 0

    def closed(self, conn: GuardedConnection) -> None:
        if conn not in self.open:
            return  # refused: never counted
        self.open.discard(conn)
        self.release(conn)
        count = self.per_ip.pop(conn.peer, 1) - 1
        if count:
            self.per_ip[conn.peer] = count

    # Bodies
    def announced(self, length: int) -> int:
        """The bytes a body announced by Content-Length will hold: none past server.max_body_bytes (the
        app answers 413 from the header, without reading it)."""
        return 0 if length > self.max_body_bytes else length

    def reserve(self, conn: GuardedConnection, nbytes: int) -> bool:
        """Count `nbytes` more body bytes on this connection; False (nothing counted) past the bound."""
        if self.body_bytes + nbytes > self.max_in_flight:
            return False
        self.body_bytes += nbytes
        conn.reserved += nbytes
        return True

    def release(self, conn: GuardedConnection) -> None:
        if conn.reserved:
            self.body_bytes -= conn.reserved
            self.freed_bytes += conn.reserved
            self.trim_due = self.freed_bytes >= TRIM_AFTER_BYTES or self.trim_due
            conn.reserved = 0

    # The sweep
    def sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        late = [c for c in self.open if c.deadline and c.deadline <= now]
        for conn in late:
            conn.deadline = 0.0
            conn.expire()
        if self.freed_bytes >= TRIM_AFTER_BYTES or (self.trim_due and not self.open):
            self.trim()
        self._sweep = loop.call_later(self.interval_s, self.sweep) if self.open or self.trim_due else None

    def trim(self) -> None:
        """Give freed heap memory back to the operating system (glibc; elsewhere nothing to do). Again
        once no connection is open, for the bodies the app let go of after the last trim."""
        self.trim_due = bool(self.open)
        self.freed_bytes = 0
        if self._trim is not None:
            self._trim(0)
