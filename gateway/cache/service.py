"""The response cache on the request path: who may use it, exact then semantic lookup, storing.

Nothing here fails a request: a store error or a lookup slower than `lookup_timeout_s` counts as a
miss (and is counted), and storing happens after the response, off the request path.

The semantic lookup has two stages. The index holds each prompt's static embedding (the table look-up
the difficulty classifier reads, well under a millisecond); a lookup embeds the prompt the same way and
takes the index's nearest `SEARCH_K`. A candidate goes on only when its static cosine reaches
`cache.prefilter_similarity` and, with the guard on, no hard rule of the guard rejects it (other numbers,
a negation, other names...: those would be rejected whatever MiniLM says). With none left, the lookup is
a miss and MiniLM never runs (counted in `encoder_skipped`). Otherwise MiniLM embeds the prompt, and the
prompts of the candidates whose MiniLM vector is not stored yet, in one micro-batched pass; those vectors
are then attached to their entries, so each entry is encoded at most once. The decision is the one-stage
cache's: MiniLM cosine at or above the acceptance threshold, then the guard.

The similarity a semantic candidate needs comes from `acceptance` (gateway/cache/acceptance.py): the
configured `cache.similarity`, or the threshold learned from checked hits, read from memory (the
learning worker refreshes it). While it learns, a miss whose nearest candidate sits just under the
threshold (and passes the guard) keeps that candidate as `Lookup.near`, to be checked as a near miss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal

import msgspec
import numpy as np

from gateway.cache.acceptance import Acceptance
from gateway.cache.base import (
    CachedAnswer,
    Candidate,
    ExactStore,
    SentenceEncoder,
    StaticEncoder,
    VectorIndex,
    answer_decoder,
    answer_encoder,
)
from gateway.cache.guard import GuardModel, hard_rejects
from gateway.cache.keys import cache_keys, last_user_text, tenant_tag
from gateway.infra.aio import retrieved
from gateway.vocab.settings import CacheSettings
from gateway.vocab.wire import ChatCompletionRequest

log = logging.getLogger("gateway.cache")
SEARCH_K = 3  # candidates the static search returns (the one-stage cache searched MiniLM's nearest 3)


class CachePolicy(msgspec.Struct, frozen=True):
    lookup: bool
    store: bool


def cache_policy(req: ChatCompletionRequest, cache_control: str | None, smr_cache: str | None,
                 cfg: CacheSettings) -> CachePolicy:
    """Pure: tool-free, single-choice requests that do not ask for a temperature above the maximum use
    the cache; the client can opt out with `Cache-Control: no-cache` (no lookup), `no-store` (no
    storing) or `X-SMR-Cache: off` (neither)."""
    hot = req.temperature is not None and req.temperature > cfg.max_temperature
    cacheable = not hot and not req.tools and (req.n or 1) == 1
    if not cacheable or (smr_cache or "").strip().lower() == "off":
        return CachePolicy(False, False)
    cc = {d.strip().lower() for d in (cache_control or "").split(",")}
    return CachePolicy(lookup="no-cache" not in cc, store="no-store" not in cc)


class Hit(msgspec.Struct, frozen=True):
    answer: CachedAnswer
    kind: Literal["hit-exact", "hit-semantic"]
    similarity: float | None = None
    guard_score: float | None = None  # the guard model's probability that it is the same question


class Lookup(msgspec.Struct):
    tenant: str
    key: str
    scope: str
    prompt: str
    vector: np.ndarray | None = None  # the prompt's MiniLM vector, when the lookup needed it (routing reuses it)
    static: np.ndarray | None = None  # its static embedding (what the index is searched with)
    hit: Hit | None = None
    near: Hit | None = None  # a near miss (just under the threshold), kept only while the threshold learns
    threshold: float | None = None  # the threshold this lookup used
    long: bool = False  # the message is longer than MiniLM reads: the exact cache only


class CacheStats(msgspec.Struct):
    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    guard_rejections: int = 0  # a candidate the guard rejected (a hard rule at the static stage, or the model)
    encoder_skipped: int = 0   # semantic lookups settled by the static stage alone: no MiniLM pass
    encoder_runs: int = 0      # semantic lookups that ran MiniLM to confirm a candidate
    too_long: int = 0          # lookups of a message longer than MiniLM reads: exact only, no semantic layer
    stored: int = 0
    errors: int = 0
    timeouts: int = 0
    last_error: str | None = None


class ResponseCache:
    def __init__(self, exact: ExactStore, index: VectorIndex | None, embedder: SentenceEncoder | None,
                 guard: GuardModel | None, cfg: CacheSettings, static: StaticEncoder | None = None) -> None:
        self.exact = exact
        # The semantic cache needs both an index and an embedder; without either it is off.
        self.index = index if embedder is not None and cfg.semantic else None
        self.embedder = embedder if self.index is not None else None
        if self.index is not None and static is None:
            from router_core.static_embed import StaticEmbedder

            static = StaticEmbedder()
        self.static = static if self.index is not None else None
        self.max_tokens = self.embedder.max_tokens if self.embedder is not None else 0
        self.guard = guard
        self.cfg = cfg
        self.stats = CacheStats()
        self.acceptance = Acceptance(cfg.similarity, cfg.max_wrong_hit_rate, learn=False)  # on: gateway.learning
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def semantic(self) -> bool:
        return self.embedder is not None

    def prepare(self, tenant: str, req: ChatCompletionRequest, route: str,
                raw: dict[str, object] | None = None) -> Lookup:
        tag = tenant_tag(tenant)
        exact, scope = cache_keys(req, route, raw)
        return Lookup(tag, f"smr:x:{tag}:{exact}", scope, last_user_text(req))

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def search_ahead(self, lk: Lookup) -> asyncio.Task[list[Candidate]] | None:
        """Start the semantic search of `lk` now, so that it goes out with the admission's round trip (the
        multiplexed link sends what a turn asked for in one write); `lookup(lk, ahead=...)` then awaits it
        instead of a round trip of its own. None when there is no semantic index or nothing to search with.
        Its result is dropped when the exact entry hits or admission refuses (a search's Redis CPU: 25-250 us,
        docs/caching.md#how-the-index-is-searched)."""
        if self.index is None or not lk.prompt or self._static_of(lk) is None:
            return None
        task = asyncio.ensure_future(self._search(self.index, lk))
        self._keep(task)
        task.add_done_callback(retrieved)  # dropped on an exact hit or a refusal; a lookup that reads it counts it
        return task

    def _static_of(self, lk: Lookup) -> np.ndarray | None:
        """The message's static vector (computed once), or None when it is longer than the encoders read (more
        characters than the static embedding reads, or more word pieces than MiniLM does): they would compare
        the beginnings of two such messages only, so the semantic layer would rest on the guard alone (whose
        rules cost 66 ms on three 100 kB candidates); such a message uses the exact cache."""
        if lk.static is None and not lk.long and self.static is not None:
            ids = self.static.token_ids([lk.prompt])[0] if len(lk.prompt) <= self.static.max_chars else None
            if ids is None or 0 < self.max_tokens < len(ids):
                lk.long = True
            else:
                lk.static = self.static.pool_one(ids)
        return lk.static

    async def _search(self, index: VectorIndex, lk: Lookup) -> list[Candidate]:
        assert lk.static is not None
        async with asyncio.timeout(self.cfg.lookup_timeout_s):
            return await index.search(lk.tenant, lk.scope, lk.static, SEARCH_K)

    async def lookup(self, lk: Lookup, peeked: tuple[bytes | None, ...] = (),
                     ahead: asyncio.Task[list[Candidate]] | None = None) -> Lookup:
        """`peeked`: `(value,)` when the exact entry was already read (with the admit script, one round trip);
        `()` reads it here. `ahead`: the semantic search `search_ahead` started, awaited instead of searching."""
        timeout = self.cfg.lookup_timeout_s
        try:
            if peeked:
                payload = peeked[0]
            else:
                async with asyncio.timeout(timeout):
                    payload = await self.exact.get(lk.key)
            if payload is not None:
                lk.hit = Hit(answer_decoder.decode(payload), "hit-exact")
                self.stats.hits_exact += 1
                return lk
            if self.embedder is not None and self.index is not None and self.static is not None and lk.prompt:
                found: list[Candidate] | None = None
                if ahead is not None:
                    found = await ahead
                elif self._static_of(lk) is not None:
                    found = await self._search(self.index, lk)
                else:
                    self.stats.too_long += 1
                candidates = [] if found is None else await self._confirmed(lk, self._gate(lk.prompt, found))
                lk.threshold = threshold = self.acceptance.threshold
                for c in candidates:
                    if c.similarity < threshold:
                        if self.acceptance.learn and lk.near is None and self.acceptance.near_miss(c.similarity):
                            lk.near = self._passed(lk.prompt, c)
                        break
                    hit = self._passed(lk.prompt, c)
                    if hit is None:
                        self.stats.guard_rejections += 1
                        continue
                    lk.hit = hit
                    self.stats.hits_semantic += 1
                    return lk
        except (Exception, TimeoutError) as exc:  # the cache never fails a request
            self._failed(exc)
        self.stats.misses += 1
        return lk

    def _gate(self, prompt: str, found: list[Candidate]) -> list[Candidate]:
        """The first stage (no I/O): the candidates whose static cosine reaches the gate and that no hard rule
        of the guard rejects (those could never be served, whatever MiniLM says; counted as guard rejections)."""
        near = [c for c in found if c.similarity >= self.cfg.prefilter_similarity]
        if self.guard is None:
            return near
        kept = [c for c, out in zip(near, hard_rejects(prompt, [c.prompt for c in near]), strict=True) if not out]
        self.stats.guard_rejections += len(near) - len(kept)
        return kept

    async def _confirmed(self, lk: Lookup, passed: list[Candidate]) -> list[Candidate]:
        """The second stage: the gate's candidates with MiniLM's cosine as their similarity, nearest first.
        MiniLM embeds the prompt and the candidates without a stored vector in one micro-batched pass; their
        vectors are then attached to their entries, off the request path. Nothing passed: no MiniLM at all."""
        if not passed:
            self.stats.encoder_skipped += 1
            return []
        assert self.embedder is not None and self.index is not None
        self.stats.encoder_runs += 1
        dim = self.embedder.dim
        stale = [c for c in passed if c.confirm is None or c.confirm.shape != (dim,)]
        vectors = await asyncio.gather(self.embedder.embed(lk.prompt), *(self.embedder.embed(c.prompt) for c in stale))
        lk.vector, fresh = vectors[0], iter(vectors[1:])
        scored = []
        for c in passed:
            confirm = c.confirm
            if confirm is None or confirm.shape != (dim,):
                confirm = next(fresh)
                if c.key:
                    self._later(self.index.attach(c.key, confirm))
            scored.append(msgspec.structs.replace(c, similarity=float(np.dot(confirm, lk.vector)), confirm=confirm))
        return sorted(scored, key=lambda c: -c.similarity)

    def _passed(self, prompt: str, c: Candidate) -> Hit | None:
        """The candidate as a semantic hit, or None when the guard says it is another question."""
        score: float | None = None
        if self.guard is not None:
            same, score = self.guard.verdict(prompt, c.prompt, c.similarity)
            if not same:
                return None
        return Hit(answer_decoder.decode(c.payload), "hit-semantic", round(c.similarity, 4),
                   None if score is None else round(score, 4))

    def save_later(self, lk: Lookup, answer: CachedAnswer) -> None:
        """Store after the response has gone (`_save` has its own time limit and failure count: no `_quietly`
        around it); keeps a reference so the task is not collected."""
        self._keep(asyncio.create_task(self._save(lk, answer)))

    def _later(self, work: Coroutine[object, object, None]) -> None:
        self._keep(asyncio.create_task(self._quietly(work)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, work: Coroutine[object, object, None]) -> None:
        try:
            async with asyncio.timeout(max(self.cfg.lookup_timeout_s * 20, 1.0)):
                await work
        except (Exception, TimeoutError) as exc:
            self._failed(exc)

    async def _save(self, lk: Lookup, answer: CachedAnswer) -> None:
        ttl = self.cfg.ttl_s
        try:
            payload = answer_encoder.encode(answer)
            async with asyncio.timeout(max(self.cfg.lookup_timeout_s * 20, 1.0)):
                stores = [self.exact.set(lk.key, payload, ttl)]
                # The static vector (cheap) always; MiniLM's only when the lookup computed it. Not a message
                # longer than MiniLM reads.
                vector = self._static_of(lk) if self.index is not None and lk.prompt else None
                if self.index is not None and vector is not None:
                    stores.append(self.index.add(lk.tenant, lk.scope, vector, lk.prompt, payload, ttl, lk.vector))
                # Started together: on the multiplexed link both go out in one write (with the settlement's).
                done = await asyncio.gather(*stores, return_exceptions=True)
                failed = [r for r in done if isinstance(r, BaseException)]
                if failed:
                    raise failed[0]
            self.stats.stored += 1
        except (Exception, TimeoutError) as exc:
            self._failed(exc)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(max(self.cfg.lookup_timeout_s * 4, 0.2)):
                await self.exact.get("smr:health")
        except (Exception, TimeoutError):
            return False
        return True

    async def clear(self, tenant: str | None) -> int:
        """Remove one tenant's entries (its `tenant_tag`), or every tenant's; returns how many."""
        n = await self.exact.clear(tenant)
        if self.index is not None:
            n += await self.index.clear(tenant)
        return n

    async def aclose(self) -> None:
        await self.drain()
        await self.exact.aclose()

