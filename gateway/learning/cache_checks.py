"""Checking semantic-cache answers, and refreshing the cache's learned threshold from the checks.

A sampled `hit-semantic` answer is checked against a fresh answer to the NEW prompt from the cached
answer's tier; a sampled near miss (the nearest candidate just under the threshold, that the guard would
have passed) against the fresh answer the client got. The same judges decide as for second opinions
(gateway.learning.judge: a rule where the request is checkable, else the model judge), the cached answer
in the "served" seat: "served" or "tie" make it 'right', "reference" 'wrong', no verdict 'unsure'.

`Refresher` reads the latest checks every `refresh_s` seconds (and after every REFRESH_EVERY new checks
this process stores) and hands them to the cache's `Acceptance`
(gateway/cache/acceptance.py); the request path only ever reads the threshold it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import msgspec
import psycopg

from gateway.cache.acceptance import Acceptance
from gateway.learning.judge import Verdict
from gateway.learning.store import CacheCheckStore
from gateway.vocab.settings_model import LearningSettings
from gateway.vocab.wire import ChatCompletionRequest, ResponseMessage

log = logging.getLogger("gateway.learning")
REFRESH_S = 30.0
REFRESH_EVERY = 25  # and after every this many new checks


class CacheJob(msgspec.Struct, frozen=True):
    request_id: str
    tenant: str | None
    kind: str  # "hit" or "near_miss"
    similarity: float
    threshold: float
    guard_score: float | None
    tier: str | None
    cached: ResponseMessage
    cached_backend: str
    request: ChatCompletionRequest
    raw: dict[str, object]
    fresh: ResponseMessage | None = None  # a near miss: the answer the client got
    fresh_backend: str | None = None


def checked(cfg: LearningSettings, request_id: str, tenant: str | None) -> bool:
    """Whether a semantic hit or near miss is checked: the same draw as second opinions (pure)."""
    if cfg.sample_rate <= 0 or (tenant is not None and tenant in cfg.exclude_tenants):
        return False
    draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return draw < cfg.sample_rate


def check_verdict(verdict: Verdict | None) -> str:
    """The cached answer's verdict from a judgement with the cached answer as "served"."""
    if verdict is None:
        return "unsure"
    return "wrong" if verdict == "reference" else "right"


class Refresher:
    """Every `refresh_s` seconds: the latest stored checks into the cache's acceptance rule."""

    def __init__(self, acceptance: Acceptance, store: CacheCheckStore, refresh_s: float = REFRESH_S) -> None:
        self.acceptance = acceptance
        self.store = store
        self.refresh_s = refresh_s
        self.refreshed = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        try:
            self.acceptance.refresh(await self.store.recent())
            self.refreshed += 1
        except (psycopg.Error, OSError) as exc:  # the database is down: the threshold stays as it was
            self.failed += 1
            log.warning("cache threshold not refreshed: %s", exc)
        except Exception:  # a bug here must not end the refresher, nor reach any request
            self.failed += 1
            log.exception("cache threshold not refreshed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cache-threshold")

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
