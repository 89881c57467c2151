"""`Gateway`: everything one app instance owns, built once in the lifespan and handed to handlers as
the `gw` dependency. It composes the request path from its parts; it does no work of its own."""

from __future__ import annotations

import time

from psycopg_pool import AsyncConnectionPool

from gateway.cache.service import ResponseCache
from gateway.db.feedback import FeedbackStore
from gateway.db.keys import KeyStore
from gateway.db.limits import SpendLog, TenantLimitsStore
from gateway.db.log_writer import LogWriter
from gateway.db.pool import ping
from gateway.db.usage import LogQueries
from gateway.infra.breaker import Breakers
from gateway.infra.changes import ChangeFeed
from gateway.infra.limiter import Counters, MemoryCounters, RedisCounters
from gateway.infra.logs import AccessLog
from gateway.infra.metrics import Metrics
from gateway.infra.tracing import NO_TRACING, Tracer
from gateway.learning.worker import build_learner
from gateway.path.accounting import Accounting
from gateway.path.admission import Admission
from gateway.path.auth import Authenticator
from gateway.path.fallback import ChainCaller
from gateway.path.request_path import RequestPath
from gateway.path.routing import Router
from gateway.providers.registry import Providers
from gateway.vocab.settings import Settings
from router_core import ClassifierPipeline


class Gateway:
    def __init__(self, settings: Settings, pipeline: ClassifierPipeline, providers: Providers,
                 auth: Authenticator, pool: AsyncConnectionPool | None = None, writer: LogWriter | None = None,
                 cache: ResponseCache | None = None, counters: Counters | None = None,
                 tracer: Tracer = NO_TRACING) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.providers = providers
        self.auth = auth
        self.pool = pool  # for the lifespan and the stores below; handlers use the stores
        self.keys = KeyStore(pool) if pool is not None else None
        self.log_queries = LogQueries(pool) if pool is not None else None
        self.feedback = FeedbackStore(pool) if pool is not None and settings.log.requests else None
        self.writer = writer
        self.cache = cache
        self.metrics = Metrics()
        self.router = Router(settings, pipeline)
        self.tenants = TenantLimitsStore(pool) if pool is not None else None
        self.counters = counters or MemoryCounters()
        self.admission = Admission(settings.routing, settings.limits, self.counters, self.tenants,
                                   SpendLog(pool) if pool is not None else None, settings.auth.key_cache_ttl_s)
        # Key and tenant changes reach every process sharing the Redis at once (closed by the lifespan).
        self.changes = ChangeFeed(self.counters.client if isinstance(self.counters, RedisCounters) else None)
        self.changes.listen(auth.on_change)
        self.changes.listen(self.admission.on_change)
        self.changes.start()
        r = settings.routing
        self.breakers = Breakers(r.breaker_failures, r.breaker_cooldown_s)
        access = AccessLog(settings.log) if settings.log.access else None
        self.tracer = tracer
        self.path = RequestPath(settings, self.router, ChainCaller(providers, self.breakers, tracer), cache,
                                self.admission, Accounting(self.metrics, writer, access), tracer)
        # Sampled second opinions (None when learning.sample_rate is 0): started and stopped by the lifespan.
        self.learning = build_learner(settings, self.path.caller, self.router.chains,
                                      self.counters.client if isinstance(self.counters, RedisCounters) else None,
                                      pool, writer)
        self.path.learning = self.learning
        self.started_at = time.time()
        self.simulated = any(b.simulated for b in settings.backends)

    async def database_status(self) -> str:
        """"ok", "disabled" or "unreachable: <why>", answered within 0.5 s (what /health shows)."""
        if self.pool is None:
            return "disabled"
        return await ping(self.pool, 0.5)

    def model_label(self, name: str) -> str:
        b = self.settings.backend(name)
        return f"{name} (simulated)" if b is not None and b.simulated else name
