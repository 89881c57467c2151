"""GET /health: liveness, plus the state of each provider and dependency.

`status` is "ok" only when every backend is configured and reachable and every dependency (database,
Redis, the key store, the request log's writer) answers; otherwise "degraded" (still HTTP 200: the
gateway keeps serving what it can, and says what is missing).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import msgspec
from litestar import Response, get

from gateway import __version__
from gateway.gateway import Gateway
from gateway.providers.catalog import default_address
from gateway.vocab.settings import Backend
from gateway.vocab.wire import encoder


class ProviderHealth(msgspec.Struct):
    provider: str
    model: str
    configured: bool
    reachable: bool | None
    simulated: bool
    detail: str | None = None
    circuit: str = "closed"  # closed | open (skipped after repeated failures) | half_open (being probed)


class Health(msgspec.Struct):
    status: str
    version: str
    uptime_s: float
    simulated: bool
    classifiers: list[str]
    classifiers_detail: list[str]  # with what each reads: "difficulty (on the minilm embedding)" where a GPU chose it
    providers: dict[str, ProviderHealth]
    dependencies: dict[str, str]
    request_log: dict[str, object] | None
    cache: dict[str, object] | None
    limits: dict[str, object]


def _address(b: Backend) -> tuple[str, int]:
    if not b.base_url:
        return default_address(b.provider)
    u = urlsplit(b.base_url)
    return u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 80)


async def _reachable(host: str, port: int, timeout: float = 0.5) -> tuple[bool, str | None]:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        return False, f"cannot connect to {host}:{port}: {type(exc).__name__}"
    writer.close()
    return True, None


async def _provider_health(gw: Gateway, b: Backend) -> ProviderHealth:
    reason = gw.providers[b.name].unavailable_reason()
    circuit = gw.breakers.state(b.name)
    if reason:
        return ProviderHealth(b.provider, b.model, False, None, b.simulated, reason, circuit)
    ok, detail = await _reachable(*_address(b))
    return ProviderHealth(b.provider, b.model, True, ok, b.simulated, detail, circuit)


async def _redis(gw: Gateway) -> str:
    if gw.cache is None:
        return "disabled"
    if gw.cache.exact.name == "memory":
        return "not used: in-process cache store (this process only)"
    return "ok" if await gw.cache.reachable() else "unreachable"


def _cache(gw: Gateway) -> dict[str, object] | None:
    if gw.cache is None:
        return None
    return {"store": gw.cache.exact.name, "semantic": gw.cache.semantic, "guard": gw.cache.guard is not None,
            "device": gw.cache.embedder.device if gw.cache.embedder else None,
            "embedding_backend": gw.cache.embedder.backend if gw.cache.embedder else None,
            **msgspec.to_builtins(gw.cache.stats),
            # The similarity a semantic hit needs: configured, or learned from checked hits (docs/caching.md).
            "acceptance": gw.cache.acceptance.report()}


@get("/health")
async def health(gw: Gateway) -> Response:
    results = await asyncio.gather(*(_provider_health(gw, b) for b in gw.settings.backends))
    providers = {b.name: r for b, r in zip(gw.settings.backends, results, strict=True)}
    usable = [r for r in results if r.configured and r.reachable and r.circuit == "closed"]
    deps = {"database": await gw.database_status(), "redis": await _redis(gw)}
    writer = msgspec.to_builtins(gw.writer.stats) if gw.writer is not None else None
    if gw.keys is not None:
        deps["key_store"] = "ok" if gw.auth.store_up else "unreachable: keys seen before are served from memory"
    a = gw.admission
    limits = {"counters": gw.counters.name, "rates_on_redis_error": a.cfg.rates_on_redis_error,
              "budgets_on_redis_error": a.cfg.budgets_on_redis_error, **msgspec.to_builtins(a.stats)}
    if gw.counters.name == "memory":
        limits["note"] = "counters in this process's memory: set REDIS_URL to share them between gateway processes"
    elif not a.stats.redis_up:
        limits["note"] = (f"Redis unreachable: rates fail {a.cfg.rates_on_redis_error}, "
                          f"budgets fail {a.cfg.budgets_on_redis_error}")
    deps_ok = a.stats.redis_up and all(v in ("ok", "disabled") or v.startswith("not used") for v in deps.values())
    log_ok = writer is None or bool(writer["db_up"])
    body = Health(
        status="ok" if len(usable) == len(results) and deps_ok and log_ok else "degraded",
        version=__version__,
        uptime_s=round(time.time() - gw.started_at, 1),
        simulated=gw.simulated,
        classifiers=list(gw.pipeline.names),
        classifiers_detail=list(gw.pipeline.labels),
        providers=providers,
        dependencies=deps,
        request_log=writer,
        cache=_cache(gw),
        limits=limits,
    )
    return Response(encoder.encode(body), media_type="application/json")
