"""The Redis cache roles. Exact entries are plain keys with a TTL (`RedisExactStore`); semantic
entries are hashes in an HNSW cosine vector index with one TAG field naming the tenant and the context
scope together (`RedisVectorIndex`), so a hit can only come from the same tenant and the same context.
Without the query engine (plain Redis) there is no index and only the exact cache works.

A search is filtered to one tenant and scope. How the query engine runs a filtered KNN decides what a
lookup costs: an ad hoc brute force over the scope's entries (exact, linear in them: 0.9-2 ms of Redis
CPU at 16,000 entries, about 10 ms at 80,000) or HNSW in batches, filtered as it goes (60-250 us for a scope
that holds a good share of the index, milliseconds for a small share). Left to itself the engine took the
brute force even for a scope holding 80 % of the index, so a busy scope's lookups grew with its entries
until they passed `cache.lookup_timeout_s` and the semantic cache stopped hitting. `knn_policy` (pure) picks
per search from the scope's and the index's entry counts, kept in windowed counters beside the entries
(`python -m bench.semantic_index` measured both sides: docs/caching.md).

The index is versioned: version 3 (`smr_semantic_v3`, keys `smr:s3:`) indexes the static embedding (128
dimensions, HNSW built with EF_CONSTRUCTION 128) under one TAG; version 2 (`smr_semantic_v2`, `smr:s2:`) had
two TAGs and the default EF_CONSTRUCTION (200: about 1.5x the insert's CPU of 128, the same recall); version 1
(`smr_semantic`, `smr:s:`) indexed MiniLM vectors. An older gateway's entries are never searched by this
one (another index over another key prefix) and expire with their TTL; `clear` removes them all.
"""

from __future__ import annotations

import logging
import secrets
import time

import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.exceptions import ResponseError

from gateway.cache.base import Candidate
from gateway.infra.redis_link import Arg, PyRedisLink, RedisLink, Script, run_script

log = logging.getLogger("gateway.cache")
INDEX = "smr_semantic_v3"
EXACT_PREFIX = "smr:x:"
SEM_PREFIX = "smr:s3:"
COUNT_PREFIX = "smr:s3n:"  # entries stored per scope (and in all, `smr:s3n:all:`) per window: see `RedisVectorIndex`
OLD_SEM_PREFIXES = ("smr:s:", "smr:s2:")  # versions 1 and 2: cleared, never searched
# EF_CONSTRUCTION: the engine's default (200) costs 2.9x the insert's Redis CPU of 64, and 64 lost 3-4 % of the
# nearest entries of 15,000-80,000-entry scopes even at EF_RUNTIME 40; 128 kept them (bench.semantic_index)
HNSW_PARAMS = {"M": 16, "EF_CONSTRUCTION": 128}
ADHOC = "HYBRID_POLICY ADHOC_BF"
# EF_RUNTIME: at the default 10 a paraphrase's search missed the nearest entry of an 80,000-entry scope in 3 % of
# searches (EF_CONSTRUCTION 128 or 200) to 14 % (64); at 40 in none to 1 % with 128 or 200 (bench.semantic_index)
BATCHES = "HYBRID_POLICY BATCHES EF_RUNTIME 40"
REMEMBERED_SCOPES = 4096  # scopes whose counts called for BATCHES, remembered for their next search
# HSET only while the entry lives: an expired entry must not come back as a hash without a TTL.
_ATTACH = ("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], 'confirm', ARGV[1]) end "
           "return 0")
# A new entry and its TTL in one command (one round trip, no pipeline; never a hash without its TTL), and the
# entry counted in its scope's and the index's counters of this window.
_ADD = ("redis.call('HSET', KEYS[1], unpack(ARGV, 3)) redis.call('EXPIRE', KEYS[1], ARGV[1]) "
        "for i = 2, 3 do redis.call('INCR', KEYS[i]) redis.call('EXPIRE', KEYS[i], ARGV[2]) end return 1")


def knn_policy(scope_entries: int, all_entries: int) -> str:
    """How the query engine should run a KNN filtered to a scope of `scope_entries` in an index of `all_entries`
    (pure). Cost models fitted to `python -m bench.semantic_index` (Redis CPU per search, 128-d, k = 3): the
    brute force costs about 20 + 0.085 us per entry of the scope; HNSW in batches about 60 + 3 us times the
    index's entries per entry of the scope (the batches it reads before k of the scope come up). The cheaper."""
    if scope_entries <= 0:
        return ADHOC
    adhoc = 20 + 0.085 * scope_entries
    batches = 60 + 3 * max(all_entries, scope_entries) / scope_entries
    return BATCHES if batches < adhoc else ADHOC


def _plain(value: str) -> str:
    """`value`, when it is letters and digits only (serving passes hex digests): nothing in it can be read as TAG
    query syntax, a key pattern's glob, or the `_` that joins a tenant to its scope."""
    if not value.isascii() or not value.isalnum():
        raise ValueError(f"not a plain tenant or scope tag: {value[:40]!r}")
    return value


def scope_tag(tenant: str, scope: str) -> str:
    """The one TAG value of a tenant's scope."""
    return f"{_plain(tenant)}_{_plain(scope)}"


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
    index through the redis-py client.

    Each entry stored is counted in two counters of the current window of `window_s` (the cache's TTL, so an
    entry lives through at most its own window and the next): its scope's and the whole index's. A search
    reads the counters of this window and the last (an upper bound on the live entries, within 2x) in the
    same round trip as the KNN, which runs as `knn_policy` chose from the counts the previous search of that
    scope read: a scope never searched yet in this process, or a small one, gets the exact brute force; only
    scopes big enough for HNSW in batches are remembered (at most `REMEMBERED_SCOPES`)."""

    def __init__(self, client: aioredis.Redis, link: RedisLink | None = None, window_s: int = 3600) -> None:
        self.client = client
        self.link: RedisLink = link if link is not None else PyRedisLink(client)
        self.window_s = max(int(window_s), 1)
        self._attach = Script(_ATTACH)
        self._add = Script(_ADD)
        self._batched: dict[str, str] = {}  # scope tag -> BATCHES, for the scopes whose counts called for it

    @classmethod
    async def open(cls, client: aioredis.Redis, dim: int, url: str = "", link: RedisLink | None = None,
                   window_s: int = 3600) -> RedisVectorIndex | None:
        """The index (created if missing), or None when this Redis has no query engine. `window_s`: the cache's
        TTL (the entry counters' window)."""
        modules = await client.module_list()
        names = {(m.get(b"name") or m.get("name") or b"") for m in modules}
        names = {n.decode() if isinstance(n, bytes) else n for n in names}
        if "search" not in {n.lower() for n in names}:
            log.warning("Redis at %s has no query engine (RediSearch): exact cache on, semantic cache off", url)
            return None
        try:
            await client.ft(INDEX).create_index(
                [TagField("ts"), VectorField("vec", "HNSW", {"TYPE": "FLOAT32", "DIM": dim, "DISTANCE_METRIC": "COSINE",
                                                             **HNSW_PARAMS})],
                definition=IndexDefinition(prefix=[SEM_PREFIX], index_type=IndexType.HASH))
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        found = await _vector_dim(client)
        if found is not None and found != dim:  # every search would fail: say so once, and stay off
            log.error("Redis at %s: the index %s holds vectors of another size (%d) than this gateway's (%d): "
                      "semantic cache off (FT.DROPINDEX %s resets it)", url, INDEX, found, dim, INDEX)
            return None
        return cls(client, link, window_s)

    def _counters(self, tag: str, window: int) -> tuple[str, str]:
        return f"{COUNT_PREFIX}{tag}:{window}", f"{COUNT_PREFIX}all:{window}"

    async def search(self, tenant: str, scope: str, vector: np.ndarray, k: int) -> list[Candidate]:
        """The `k` nearest entries of this tenant and scope, nearest first (FT.SEARCH, its RESP2 reply read here:
        the total, then each entry's key and its fields), and the entry counts read for the next search."""
        tag = scope_tag(tenant, scope)
        window = int(time.time()) // self.window_s
        (scope_now, all_now), (scope_before, all_before) = self._counters(tag, window), self._counters(tag, window - 1)
        policy = self._batched.get(tag, ADHOC)
        counts, res = await self.link.pipeline([
            ("MGET", scope_now, scope_before, all_now, all_before),
            ("FT.SEARCH", INDEX, f"(@ts:{{{tag}}})=>[KNN {k} @vec $v {policy} AS dist]",
             "RETURN", 4, "prompt", "answer", "dist", "confirm", "SORTBY", "dist", "ASC", "DIALECT", 2, "LIMIT", 0, k,
             "PARAMS", 2, "v", vector.astype(np.float32).tobytes())])
        if isinstance(res, BaseException):
            raise res
        if isinstance(counts, list):
            self._remember(tag, *(int(c or 0) for c in counts))
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

    def _remember(self, tag: str, scope_now: int, scope_before: int, all_now: int, all_before: int) -> None:
        policy = knn_policy(scope_now + scope_before, all_now + all_before)
        if policy == ADHOC:
            self._batched.pop(tag, None)
            return
        if tag not in self._batched and len(self._batched) >= REMEMBERED_SCOPES:
            del self._batched[next(iter(self._batched))]  # the longest remembered goes
        self._batched[tag] = policy

    def policy(self, tenant: str, scope: str) -> str:
        """How the next search of this scope will run (ADHOC or BATCHES)."""
        return self._batched.get(scope_tag(tenant, scope), ADHOC)

    async def add(self, tenant: str, scope: str, vector: np.ndarray, prompt: str, payload: bytes,
                  ttl_s: int, confirm: np.ndarray | None = None) -> None:
        key = f"{SEM_PREFIX}{tenant}:{secrets.token_hex(8)}"
        tag = scope_tag(tenant, scope)
        args: list[Arg] = [ttl_s, 2 * self.window_s, "ts", tag, "tenant", tenant, "scope", scope, "prompt", prompt,
                           "answer", payload, "vec", vector.astype(np.float32).tobytes()]
        if confirm is not None:
            args += ["confirm", confirm.astype(np.float32).tobytes()]
        await run_script(self.link, self._add, [key, *self._counters(tag, int(time.time()) // self.window_s)], args)

    async def attach(self, key: str, confirm: np.ndarray) -> None:
        await run_script(self.link, self._attach, [key], [confirm.astype(np.float32).tobytes()])

    async def clear(self, tenant: str | None) -> int:
        if tenant:
            _plain(tenant)
        self._batched = {t: p for t, p in self._batched.items() if tenant and not t.startswith(f"{tenant}_")}
        suffix = f"{tenant}:*" if tenant else "*"
        n = 0
        for prefix in (SEM_PREFIX, *OLD_SEM_PREFIXES):
            n += await _unlink_matching(self.client, prefix + suffix)
        await _unlink_matching(self.client, f"{COUNT_PREFIX}{tenant}_*" if tenant else f"{COUNT_PREFIX}*")
        return n
