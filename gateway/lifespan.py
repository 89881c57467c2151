"""Everything one app instance owns, opened in the lifespan and closed in its `finally`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from gateway.providers.registry import Providers
from gateway.service import ChatService
from gateway.settings import Settings
from router_core import ClassifierPipeline

log = logging.getLogger("gateway")


class Gateway:
    """The per-app object graph handlers reach through `state.gateway`."""

    def __init__(self, settings: Settings, pipeline: ClassifierPipeline, providers: Providers) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.providers = providers
        self.service = ChatService(settings, providers, pipeline)
        self.started_at = time.time()
        self.simulated = any(b.simulated for b in settings.backends)

    def model_label(self, name: str) -> str:
        b = self.settings.backend(name)
        return f"{name} (simulated)" if b is not None and b.simulated else name


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pipeline: ClassifierPipeline = app.state.pipeline
    providers = Providers(settings.backends)
    gateway = Gateway(settings, pipeline, providers)
    app.state.gateway = gateway
    for p in providers:
        reason = p.unavailable_reason()
        b = p.backend
        tag = " [SIMULATED]" if b.simulated else ""
        if reason:
            log.warning("backend %s (%s) unavailable: %s", b.name, b.provider, reason)
        else:
            log.info("backend %s (%s, %s)%s", b.name, b.provider, b.base_url or "default URL", tag)
    try:
        yield
    finally:
        await providers.aclose()
        await pipeline.aclose()
