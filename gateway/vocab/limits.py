"""Rate limits and budgets, the pure part: what a key or tenant may do, what one request is charged,
budget periods, and OpenAI's `x-ratelimit-*` headers. The counters themselves live in `limiter.py`.

A key and its tenant each carry a `LimitSet`; a request must pass both, so the tighter one wins.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.vocab.settings import Backend
from router_core.types import Tier

Period = Literal["day", "month", "total"]
RPM = Annotated[int, Meta(ge=1, le=1_000_000_000)]
TPM = Annotated[int, Meta(ge=1, le=1_000_000_000_000)]
USD = Annotated[float, Meta(ge=0, le=1e9)]
WINDOW_MS = 60_000


class LimitSet(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """What one key or one tenant may do. None: no limit of that kind.

    The one list of limit fields: the keys' and tenants' tables (one column each), the admin API's bodies, the
    CLI's flags and PATCH's allowed fields all come from it. A rate limit is a field here plus its line in
    RATE_LIMITS; a new one also needs its column (a migration)."""

    rate_limit_rpm: RPM | None = None
    rate_limit_tpm: TPM | None = None
    budget_usd: USD | None = None
    budget_period: Period = "total"
    allowed_tiers: Annotated[list[Tier], Meta(min_length=1)] | None = None  # [] is not "every tier" (null is)
    rate_limit_rpd: RPM | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in LIMIT_FIELDS if f != "budget_period")


NO_LIMITS = LimitSet()
LIMIT_FIELDS: tuple[str, ...] = LimitSet.__struct_fields__


class RateLimit(msgspec.Struct, frozen=True):
    """A rate limit field of LimitSet: what it counts and over how long a sliding window."""

    field: str
    counts: Literal["requests", "tokens"]
    window_ms: int


RATE_LIMITS = (
    RateLimit("rate_limit_rpm", "requests", WINDOW_MS),
    RateLimit("rate_limit_tpm", "tokens", WINDOW_MS),
    RateLimit("rate_limit_rpd", "requests", 86_400_000),
)


class RateCheck(msgspec.Struct, frozen=True):
    """One counter a request draws on: `scope` is "key" or "tenant", `kind` "requests" or "tokens"."""

    scope: str
    owner: str
    kind: Literal["requests", "tokens"]
    limit: int
    cost: int
    window_ms: int = WINDOW_MS

    @property
    def redis_key(self) -> str:
        window = "" if self.window_ms == WINDOW_MS else f":{self.window_ms // 1000}s"
        return f"smr:rl:{self.scope}:{self.owner}:{self.kind}{window}"


class RateState(msgspec.Struct, frozen=True):
    check: RateCheck
    used: float       # in the sliding window, this request included when allowed
    reset_ms: int     # until the window has room again (for a refusal) or fully resets


class Hold(msgspec.Struct, frozen=True):
    """One request's hold on its budgets: `amount` (its worst case) for at most `ttl_s`, after which it lapses
    even if its settlement never comes (Redis stalled, the gateway died). `id` names the settlement too,
    so a settlement tried twice counts once."""

    id: str
    amount: float
    ttl_s: float

    @property
    def member(self) -> str:
        return f"{self.id}|{self.amount!r}"


class BudgetCheck(msgspec.Struct, frozen=True):
    scope: str
    owner: str
    budget_usd: float
    period: Period
    period_id: str

    @property
    def redis_key(self) -> str:
        return f"smr:budget:{self.scope}:{self.owner}:{self.period_id}"


def rate_checks(scope: str, owner: str, limits: LimitSet, prompt_tokens: int) -> list[RateCheck]:
    checks = []
    for rate in RATE_LIMITS:
        limit = getattr(limits, rate.field)
        if limit is not None:
            cost = 1 if rate.counts == "requests" else prompt_tokens
            checks.append(RateCheck(scope, owner, rate.counts, limit, cost, rate.window_ms))
    return checks


def period_id(period: Period, now: dt.datetime) -> str:
    """`d2026-01-31`, `m2026-01` or `total` (what strftime's `d%Y-%m-%d` and `m%Y-%m` wrote, at a third of its cost:
    two per request)."""
    if period == "day":
        return f"d{now.year}-{now.month:02d}-{now.day:02d}"
    if period == "month":
        return f"m{now.year}-{now.month:02d}"
    return "total"


def period_start(period: Period, now: dt.datetime) -> dt.datetime | None:
    """The start of the budget period (UTC), or None for `total`."""
    now = now.astimezone(dt.UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def period_ttl_s(period: Period) -> int | None:
    """How long a period's spend is kept in Redis after its last change (past the period's end)."""
    return {"day": 3 * 86_400, "month": 40 * 86_400}.get(period)


def budget_check(scope: str, owner: str, limits: LimitSet, now: dt.datetime) -> BudgetCheck | None:
    if limits.budget_usd is None:
        return None
    return BudgetCheck(scope, owner, limits.budget_usd, limits.budget_period, period_id(limits.budget_period, now))


def worst_case_cost(prompt_tokens: int, output_limit: int | None, chain: tuple[Backend, ...]) -> float:
    """The most this request can cost on any backend of its chain: the prompt plus `max_tokens` (or the
    backend's output cap) at that backend's prices. Reserved before the call, settled after it."""
    worst = 0.0
    for b in chain:
        out = output_limit if output_limit is not None else b.max_output_tokens
        worst = max(worst, (prompt_tokens * b.input_price + out * b.output_price) / 1e6)
    return worst


# Beyond its attempts' time limits a request spends a little in admission, routing and settling.
def hold_ttl_s(chain: tuple[Backend, ...], margin_s: float) -> float:
    """How long a request can hold its budgets: each attempt of its chain (a cascade's both chains) to its
    whole time limit, then the margin (`limits.hold_margin_s`). No request lives longer, so a hold left past
    this is an orphan."""
    return sum(b.timeouts.total_s for b in chain) + margin_s


def _duration(ms: int) -> str:
    """OpenAI's reset format: "20ms", "1s", "6m0s"."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    s = math.ceil(ms / 1000)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60}s"


def ratelimit_headers(states: list[RateState]) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers from the tightest counter of each kind."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        of_kind = [s for s in states if s.check.kind == kind]
        if not of_kind:
            continue
        tight = min(of_kind, key=lambda s: s.check.limit - s.used)
        headers[f"x-ratelimit-limit-{kind}"] = str(tight.check.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(tight.check.limit - tight.used)))
        headers[f"x-ratelimit-reset-{kind}"] = _duration(tight.reset_ms)
    return headers
