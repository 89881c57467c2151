"""Which answers get a second opinion (pure), and the caps on what second opinions may cost (Redis).

`sampled` decides from the request alone, the same way in every process: an `auto` answer from a tier
below the reference, of a tenant not excluded, of at most `max_prompt_tokens` prompt tokens, whose request
id hashes below `sample_rate`. `SpendCaps`
holds the day's learning spend in Redis (one key per UTC day, one per tenant and day): a job is refused
when either is at its cap, and refused too when Redis cannot say (no Redis, an error, a slow answer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from redis.exceptions import RedisError

from gateway.infra.aio import within
from gateway.vocab.settings_model import LearningSettings

KEY = "smr:learning:spend:"
DAY_S = 86_400


def sampled(cfg: LearningSettings, request_id: str, tenant: str | None, mode: str | None, tier: str | None,
            prompt_tokens: int = 0) -> bool:
    """Whether this answer is sampled: pure, deterministic in the request id."""
    if cfg.sample_rate <= 0 or mode != "auto" or tier is None or tier == cfg.reference_tier:
        return False
    if prompt_tokens > cfg.max_prompt_tokens:
        return False
    if tenant is not None and tenant in cfg.exclude_tenants:
        return False
    draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return draw < cfg.sample_rate


def day_keys(tenant: str | None, now: dt.datetime | None = None) -> tuple[str, str]:
    """The Redis keys of today's (UTC) learning spend: in all, and this tenant's."""
    day = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d")
    return KEY + day, f"{KEY}{day}:{tenant or '-'}"


class SpendCaps:
    """The day's learning spend against `budget_usd_per_day` (and the tenant's cap), held in Redis."""

    def __init__(self, cfg: LearningSettings, client: Any | None, timeout_s: float = 0.25) -> None:
        self.cfg = cfg
        self.client = client
        self.timeout_s = timeout_s

    async def refusal(self, tenant: str | None) -> str | None:
        """Why no learning call may be made for this tenant now ("capped", "redis"), or None."""
        if self.client is None:
            return "redis"
        total_key, tenant_key = day_keys(tenant)
        try:
            total, mine = await within(self.client.mget(total_key, tenant_key), self.timeout_s)
        except (RedisError, OSError, TimeoutError, ValueError):  # unreachable, slow, failing: paused
            return "redis"
        if float(total or 0) >= self.cfg.budget_usd_per_day:
            return "capped"
        cap = self.cfg.tenant_budget_usd_per_day
        if cap is not None and float(mine or 0) >= cap:
            return "capped"
        return None

    async def spend(self, tenant: str | None, usd: float) -> None:
        if self.client is None or usd <= 0:
            return
        total_key, tenant_key = day_keys(tenant)
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in (total_key, tenant_key):
                pipe.incrbyfloat(key, usd)
                pipe.expire(key, 2 * DAY_S)
            await within(pipe.execute(), self.timeout_s)
        except (RedisError, OSError, TimeoutError, ValueError):  # the log has the learning rows either way
            return
