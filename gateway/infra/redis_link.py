"""`RedisLink`: the few calls the request path makes to Redis (the limit scripts, the exact cache's GET and SET),
as one small interface with two implementations:

    RespClient   (gateway.infra.resp) one multiplexed connection, commands packed and pipelined as they come:
                 what the gateway uses on its hot path
    PyRedisLink  the same calls through a redis-py client (TLS, or a caller that already holds one)

Both raise what redis-py raises, so callers keep catching `RedisError`, `OSError` and `TimeoutError`: an error
reply is a `ResponseError` (`NoScriptError` for a script the server lost), a lost or unreachable server a
`redis.exceptions.ConnectionError`. Everything off the hot path (admin, pub/sub, the vector index) keeps redis-py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

Arg = str | bytes | int | float | memoryview


class Script:
    """A Lua script called by its SHA-1 (EVALSHA); loaded again, once, by a server that answers NOSCRIPT."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class RedisLink(Protocol):
    async def execute(self, *args: Arg) -> Any:
        """One command; an error reply raised."""
        ...

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip; each error reply in its place, as an exception value."""
        ...

    async def aclose(self) -> None: ...


async def run_script(link: RedisLink, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
    """EVALSHA; on NOSCRIPT (a restart, a failover, SCRIPT FLUSH) the script is loaded and called again."""
    try:
        return await link.execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await link.execute("SCRIPT", "LOAD", script.text)
        return await link.execute("EVALSHA", script.sha, len(keys), *keys, *args)


class PyRedisLink:
    """`RedisLink` over a redis-py asyncio client (its pool, retries and TLS)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def execute(self, *args: Arg) -> Any:
        if len(args) > 1 and args[0] == "SCRIPT":  # redis-py names a subcommand with its command
            return await self.client.execute_command("SCRIPT " + str(args[1]), *args[2:])
        return await self.client.execute_command(*args)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        """The client is its owner's to close."""
