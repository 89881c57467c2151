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
from redis.commands.search.query import Query
from redis.exceptions import ResponseError

from gateway.cache.base import Candidate

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
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._attach = client.register_script(_ATTACH)
        self._add = client.register_script(_ADD)

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
        found = await _vector_dim(client)
        if found is not None and found != dim:  # every search would fail: say so once, and stay off
            log.error("Redis at %s: the index %s holds vectors of another size (%d) than this gateway's (%d): "
                      "semantic cache off (FT.DROPINDEX %s resets it)", url, INDEX, found, dim, INDEX)
            return None
        return cls(client)

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        q = (Query(f"(@tenant:{{{tenant}}} @scope:{{{scope}}})=>[KNN {k} @vec $v AS dist]")
             .sort_by("dist").return_fields("prompt", "answer", "dist").return_field("confirm", decode_field=False)
             .dialect(2).paging(0, k))
        res = await self.client.ft(INDEX).search(q, query_params={"v": vector.astype(np.float32).tobytes()})
        out = []
        for doc in res.docs:  # type: ignore[union-attr]
            prompt = doc.prompt.decode() if isinstance(doc.prompt, bytes) else doc.prompt
            payload = doc.answer if isinstance(doc.answer, bytes) else doc.answer.encode()
            raw = getattr(doc, "confirm", None)
            confirm = np.frombuffer(raw, dtype=np.float32) if isinstance(raw, bytes) and raw else None
            out.append(Candidate(prompt, payload, 1.0 - float(doc.dist), doc.id, confirm))
        return out

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int, confirm: np.ndarray | None = None) -> None:
        key = f"{SEM_PREFIX}{tenant}:{secrets.token_hex(8)}"
        args: list[str | bytes | int] = [ttl_s, "tenant", tenant, "scope", scope, "prompt", prompt, "answer", payload,
                                         "vec", vector.astype(np.float32).tobytes()]
        if confirm is not None:
            args += ["confirm", confirm.astype(np.float32).tobytes()]
        await self._add(keys=[key], args=args)

    async def attach(self, key: str, confirm: np.ndarray) -> None:
        await self._attach(keys=[key], args=[confirm.astype(np.float32).tobytes()])

    async def clear(self, tenant: str | None) -> int:
        suffix = f"{tenant}:*" if tenant else "*"
        n = 0
        for prefix in (SEM_PREFIX, *OLD_SEM_PREFIXES):
            n += await _unlink_matching(self.client, prefix + suffix)
        return n
