"""The Redis cache roles. Exact entries are plain keys with a TTL (`RedisExactStore`); semantic
entries are hashes in an HNSW cosine vector index with TAG fields for the tenant and the context
scope (`RedisVectorIndex`), so a hit can only come from the same tenant and the same context.
Without the query engine (plain Redis) there is no index and only the exact cache works.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.exceptions import ResponseError

from gateway.cache.base import Candidate

log = logging.getLogger("gateway.cache")
INDEX = "smr_semantic"
EXACT_PREFIX = "smr:x:"
SEM_PREFIX = "smr:s:"


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
    name = "redis"

    def __init__(self, client: aioredis.Redis, url: str = "", owns_client: bool = True) -> None:
        self.client = client
        self.url = url
        self.owns_client = owns_client  # the gateway shares its client with the limit counters

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self.client.set(key, value, ex=ttl_s)

    async def clear(self, tenant: str | None) -> int:
        return await _unlink_matching(self.client, f"{EXACT_PREFIX}{tenant + ':' if tenant else ''}*")

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()


class RedisVectorIndex:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @classmethod
    async def open(cls, client: aioredis.Redis, dim: int, url: str = "") -> RedisVectorIndex | None:
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
        return cls(client)

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        q = (Query(f"(@tenant:{{{tenant}}} @scope:{{{scope}}})=>[KNN {k} @vec $v AS dist]")
             .sort_by("dist").return_fields("prompt", "answer", "dist").dialect(2).paging(0, k))
        res = await self.client.ft(INDEX).search(q, query_params={"v": vector.astype(np.float32).tobytes()})
        out = []
        for doc in res.docs:  # type: ignore[union-attr]
            prompt = doc.prompt.decode() if isinstance(doc.prompt, bytes) else doc.prompt
            payload = doc.answer if isinstance(doc.answer, bytes) else doc.answer.encode()
            out.append(Candidate(prompt, payload, 1.0 - float(doc.dist)))
        return out

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int) -> None:
        key = f"{SEM_PREFIX}{tenant}:{secrets.token_hex(8)}"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"tenant": tenant, "scope": scope, "prompt": prompt, "answer": payload,
                                    "vec": vector.astype(np.float32).tobytes()})
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def clear(self, tenant: str | None) -> int:
        return await _unlink_matching(self.client, f"{SEM_PREFIX}{tenant + ':' if tenant else ''}*")
