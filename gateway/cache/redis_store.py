"""The Redis cache roles. Exact entries are plain keys with a TTL (`RedisExactStore`); semantic
entries are hashes in an HNSW cosine vector index with TAG fields for the tenant and the context
scope (`RedisVectorIndex`), so a hit can only come from the same tenant and the same context.
Without the query engine (plain Redis) there is no index and only the exact cache works.

The index is versioned: version 2 (`smr_semantic_v2`, keys `smr:s2:`) indexes the static embedding (128
dimensions) and keeps the prompt's MiniLM vector beside it, unindexed (`confirm`); version 1
(`smr_semantic`, keys `smr:s:`) indexed MiniLM vectors. An older gateway's entries are never searched by
this one (another index over another key prefix) and expire with their TTL; `clear` removes both.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.exceptions import ResponseError

from gateway.cache.base import Candidate
from gateway.infra.redis_link import Arg, PyRedisLink, RedisLink, Script, run_script

log = logging.getLogger("gateway.cache")
INDEX = "smr_semantic_v2"
EXACT_PREFIX = "smr:x:"
SEM_PREFIX = "smr:s2:"
OLD_SEM_PREFIXES = ("smr:s:",)  # version 1 (MiniLM vectors in the index): cleared, never searched
# HSET only while the entry lives: an expired entry must not come back as a hash without a TTL.
_ATTACH = ("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], 'confirm', ARGV[1]) end "
           "return 0")
# A new entry and its TTL in one command (one round trip, no pipeline; never a hash without its TTL).
_ADD = "redis.call('HSET', KEYS[1], unpack(ARGV, 2)) return redis.call('EXPIRE', KEYS[1], ARGV[1])"


def connect(url: str, timeout_s: float) -> aioredis.Redis:
    """One client for both roles (the pool is shared); nothing is sent until the first command."""
    return aioredis.Redis.from_url(url, socket_timeout=max(timeout_s, 0.05) * 4, socket_connect_timeout=1.0,
                                   protocol=2)


async def _unlink_matching(client: aioredis.Redis, pattern: str) -> int:
    n = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            n += await client.unlink(*batch)
            batch = []
    if batch:
        n += await client.unlink(*batch)
    return int(n)


class RedisExactStore:
    """GET and SET through `link` (the gateway's multiplexed `RespClient`, shared with the limit counters, so a
    SET and a settlement made in the same turn travel together; by default the redis-py client); the clearing
    scan through the redis-py client."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, url: str = "", owns_client: bool = True,
                 link: RedisLink | None = None) -> None:
        self.client = client
        self.url = url
        self.owns_client = owns_client  # the gateway shares its client with the limit counters
        self.link: RedisLink = link if link is not None else PyRedisLink(client)

    async def get(self, key: str) -> bytes | None:
        value = await self.link.execute("GET", key)
        return value.encode() if isinstance(value, str) else value  # type: ignore[no-any-return]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self.link.execute("SET", key, value, "EX", ttl_s)

    async def clear(self, tenant: str | None) -> int:
        return await _unlink_matching(self.client, f"{EXACT_PREFIX}{tenant + ':' if tenant else ''}*")

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()


async def _vector_dim(client: aioredis.Redis) -> int | None:
    """The dimension of the index's vector field, as FT.INFO lists it (None when it does not say)."""
    info = await client.ft(INDEX).info()
    for attribute in info.get("attributes") or info.get(b"attributes") or []:
        words = [w.decode() if isinstance(w, bytes) else w for w in attribute]
        fields = dict(zip(words[::2], words[1::2], strict=False))
        if fields.get("identifier") == "vec" and "dim" in fields:
            return int(fields["dim"])
    return None


class RedisVectorIndex:
    """Searches, adds and attaches through `link` (as `RedisExactStore`); creating, checking and clearing the
    index through the redis-py client."""

    def __init__(self, client: aioredis.Redis, link: RedisLink | None = None) -> None:
        self.client = client
        self.link: RedisLink = link if link is not None else PyRedisLink(client)
        self._attach = Script(_ATTACH)
        self._add = Script(_ADD)

    @classmethod
    async def open(cls, client: aioredis.Redis, dim: int, url: str = "",
                   link: RedisLink | None = None) -> RedisVectorIndex | None:
        """The index (created if missing), or None when this Redis has no query engine."""
        modules = await client.module_list()
        names = {(m.get(b"name") or m.get("name") or b"") for m in modules}
        names = {n.decode() if isinstance(n, bytes) else n for n in names}
        if "search" not in {n.lower() for n in names}:
            log.warning("Redis at %s has no query engine (RediSearch): exact cache on, semantic cache off", url)
            return None
        try:
            await client.ft(INDEX).create_index(
                [TagField("tenant"), TagField("scope"),
                 VectorField("vec", "HNSW", {"TYPE": "FLOAT32", "DIM": dim, "DISTANCE_METRIC": "COSINE"})],
                definition=IndexDefinition(prefix=[SEM_PREFIX], index_type=IndexType.HASH))
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        found = await _vector_dim(client)
        if found is not None and found != dim:  # every search would fail: say so once, and stay off
            log.error("Redis at %s: the index %s holds vectors of another size (%d) than this gateway's (%d): "
                      "semantic cache off (FT.DROPINDEX %s resets it)", url, INDEX, found, dim, INDEX)
            return None
        return cls(client, link)

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        """The `k` nearest entries of this tenant and scope, nearest first (FT.SEARCH, its RESP2 reply read here:
        the total, then each entry's key and its fields)."""
        res = await self.link.execute(
            "FT.SEARCH", INDEX, f"(@tenant:{{{tenant}}} @scope:{{{scope}}})=>[KNN {k} @vec $v AS dist]",
            "RETURN", 4, "prompt", "answer", "dist", "confirm", "SORTBY", "dist", "ASC", "DIALECT", 2, "LIMIT", 0, k,
            "PARAMS", 2, "v", vector.astype(np.float32).tobytes())
        out = []
        for i in range(1, len(res) - 1, 2):
            if not res[i + 1]:  # an entry gone between the search and the read of its fields
                continue
            words = res[i + 1]
            fields = dict(zip([w.decode() if isinstance(w, bytes) else w for w in words[::2]], words[1::2],
                              strict=False))
            prompt, payload, raw = fields.get("prompt") or b"", fields.get("answer") or b"", fields.get("confirm")
            confirm = np.frombuffer(raw, dtype=np.float32) if isinstance(raw, bytes) and raw else None
            key = res[i].decode() if isinstance(res[i], bytes) else str(res[i])
            out.append(Candidate(prompt.decode("utf-8", "ignore") if isinstance(prompt, bytes) else prompt,
                                 payload if isinstance(payload, bytes) else payload.encode(),
                                 1.0 - float(fields.get("dist") or 1.0), key, confirm))
        return out

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int, confirm: np.ndarray | None = None) -> None:
        key = f"{SEM_PREFIX}{tenant}:{secrets.token_hex(8)}"
        args: list[Arg] = [ttl_s, "tenant", tenant, "scope", scope, "prompt", prompt, "answer", payload,
                                         "vec", vector.astype(np.float32).tobytes()]
        if confirm is not None:
            args += ["confirm", confirm.astype(np.float32).tobytes()]
        await run_script(self.link, self._add, [key], args)

    async def attach(self, key: str, confirm: np.ndarray) -> None:
        await run_script(self.link, self._attach, [key], [confirm.astype(np.float32).tobytes()])

    async def clear(self, tenant: str | None) -> int:
        suffix = f"{tenant}:*" if tenant else "*"
        n = 0
        for prefix in (SEM_PREFIX, *OLD_SEM_PREFIXES):
            n += await _unlink_matching(self.client, prefix + suffix)
        return n
