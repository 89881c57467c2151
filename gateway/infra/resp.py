"""`RespClient`: a small multiplexed Redis client (RESP2) for the request path's hot commands (`RedisLink`).

One connection (an `asyncio.Protocol`), shared by every caller of this process's event loop:

    execute / pipeline   the command packed (hiredis) and queued with a future; the queue is written in one
                         write at the end of the loop's turn, so the commands of concurrent callers travel
                         together (one round trip), and the replies come back in order
    data_received        hiredis parses the replies; each resolves the oldest future (a caller that timed
                         out has left its future there, cancelled: its late reply is matched and dropped)
    a lost connection    fails every pending future with `redis.exceptions.ConnectionError`; the next call
                         connects again
    a silent server      when the oldest reply is `reply_timeout_s` late the connection is dropped (the same
                         ConnectionError), so a frozen server does not pile up futures

It holds no pool, retries nothing and decodes nothing (replies are bytes, ints, lists), as redis-py's client
with `decode_responses` off answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.infra.redis_link import Arg

_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


def _error(reply: ResponseError) -> RedisError:
    """An error reply as redis-py types it (the ones callers tell apart)."""
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text.removeprefix("NOSCRIPT "))
    if text.startswith(("NOAUTH", "WRONGPASS")):
        return AuthenticationError(text)
    return reply


class _Link(asyncio.Protocol):
    """One connection: commands written in order, replies matched to their futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reply_timeout_s: float) -> None:
        self.loop = loop
        self.reply_timeout_s = reply_timeout_s
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[asyncio.Future[Any], int]] = deque()  # (future, replies: 0 one, n a list of n)
        self.partial: list[Any] = []  # the replies of the oldest pipeline, so far
        self.out: list[bytes] = []    # packed commands waiting for the end of this turn
        self.flushing = False
        self.closed: Exception | None = None
        self.heard_at = 0.0   # when the oldest pending reply started to be waited for, or a reply last came
        self.watch: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ sending
    def send(self, packed: bytes, replies: int) -> asyncio.Future[Any]:
        if self.closed is not None:
            raise RedisConnectionError(str(self.closed))
        fut = self.loop.create_future()
        if not self.pending:
            self.heard_at = time.monotonic()
            if self.watch is None:
                self.watch = self.loop.call_later(self.reply_timeout_s, self._check)
        self.pending.append((fut, replies))
        self.out.append(packed)
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        """The commands queued this turn, in one write (one round trip)."""
        self.flushing = False
        out, self.out = self.out, []
        if self.transport is not None and self.closed is None and out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _check(self) -> None:
        self.watch = None
        if not self.pending or self.closed is not None:
            return
        late = time.monotonic() - self.heard_at
        if late >= self.reply_timeout_s:
            self.fail(RedisConnectionError(f"no reply from Redis for {late:.1f} s"))
        else:
            self.watch = self.loop.call_later(self.reply_timeout_s - late, self._check)

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.heard_at = time.monotonic()
        reader, pending = self.reader, self.pending
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not pending:
                self.fail(RedisConnectionError("a reply from Redis that no command asked for"))
                return
            fut, n = pending[0]
            if n == 0:
                pending.popleft()
                if not fut.done():  # done: its caller timed out or went away; the reply is dropped
                    if isinstance(reply, ResponseError):
                        fut.set_exception(_error(reply))
                    else:
                        fut.set_result(reply)
                continue
            self.partial.append(_error(reply) if isinstance(reply, ResponseError) else reply)
            if len(self.partial) == n:
                pending.popleft()
                replies, self.partial = self.partial, []
                if not fut.done():
                    fut.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis closed the connection{f' ({exc})' if exc else ''}"))

    def fail(self, exc: Exception) -> None:
        """Every pending future failed with `exc`; the connection closed and never used again."""
        if self.closed is None:
            self.closed = exc
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        pending, self.pending, self.partial, self.out = self.pending, deque(), [], []
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """`RedisLink` over one multiplexed connection, opened on the first call and again after it is lost."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0, *, path: str | None = None,
                 username: str | None = None, password: str | None = None, connect_timeout_s: float = 1.0,
                 reply_timeout_s: float = 1.0) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password = username, password
        self.connect_timeout_s = connect_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], reply_timeout_s: float | None = None) -> RespClient:
        """From a redis-py pool's `connection_kwargs` (the same server, database and credentials)."""
        return cls(str(kwargs.get("host") or "127.0.0.1"), int(kwargs.get("port") or 6379), int(kwargs.get("db") or 0),
                   path=kwargs.get("path"), username=kwargs.get("username"), password=kwargs.get("password"),
                   connect_timeout_s=float(kwargs.get("socket_connect_timeout") or 1.0),
                   reply_timeout_s=float(reply_timeout_s or kwargs.get("socket_timeout") or 1.0))

    async def execute(self, *args: Arg) -> Any:
        link = self._link
        if link is None or link.closed is not None:
            link = await self._connected()
        return await link.send(_pack(args), 0)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        link = self._link
        if link is None or link.closed is not None:
            link = await self._connected()
        result: list[Any] = await link.send(b"".join([_pack(tuple(c)) for c in commands]), len(commands))
        return result

    async def _connected(self) -> _Link:
        """The open connection; one connect at a time, which a caller that gives up does not cancel."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected_or_not)
        return await asyncio.shield(self._connecting)

    def _connected_or_not(self, task: asyncio.Task[_Link]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._link = task.result()

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        link: _Link | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path:
                    _, link = await loop.create_unix_connection(lambda: _Link(loop, self.reply_timeout_s), self.path)
                else:
                    _, link = await loop.create_connection(lambda: _Link(loop, self.reply_timeout_s), self.host,
                                                           self.port)
                hello: list[tuple[Arg, ...]] = []
                if self.password:
                    hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
                if self.db:
                    hello.append(("SELECT", self.db))
                if hello:
                    for reply in await link.send(b"".join(_pack(c) for c in hello), len(hello)):
                        if isinstance(reply, Exception):
                            raise reply
        except (OSError, TimeoutError) as exc:
            if link is not None:
                link.fail(RedisConnectionError(str(exc)))
            where = self.path or f"{self.host}:{self.port}"
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {type(exc).__name__} {exc}") from exc
        except BaseException:
            if link is not None:
                link.fail(RedisConnectionError("connection abandoned"))
            raise
        return link

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        link, self._link = self._link, None
        if link is not None:
            link.fail(RedisConnectionError("the client was closed"))
