"""Admission: may this caller make this request, may it take this route, can it afford it?

Three steps on the request path (`RequestPath.serve`), and a settlement when the request ends:

    admit(principal, req, raw)   request-level rules, then the key's and the tenant's rate limits
                                 (requests and prompt tokens per minute), all taken atomically or none;
                                 the prompt is every part a provider bills (`pricing.prompt_tokens`).
                                 The same call reads how much of its budgets is used, for `auto` routing
    check_route(ticket, tier)    the key's and the tenant's allowed tiers, before any call
    reserve(ticket, chain, req)  the worst-case cost against the key's and the tenant's budgets
    settle(ticket, priced)       completion tokens, and the prompt tokens the upstream reported past the
                                 estimate, onto the token limits; the reservation to the real cost

Counters live in Redis (`limiter.py`) so every gateway process enforces one limit: one script call to
admit, one to reserve, one to settle. When Redis cannot be reached, `limits.rates_on_redis_error` /
`limits.budgets_on_redis_error` choose: "open" serves the request and says so in /health and /metrics,
"closed" refuses it with 503.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Awaitable
from typing import Protocol, TypeVar

import msgspec
from redis.exceptions import RedisError

from gateway.infra.aio import within
from gateway.infra.limiter import Counters
from gateway.infra.lookups import CachedLookup, SourceDown
from gateway.infra.replays import Replays
from gateway.path.auth import Principal
from gateway.vocab.errors import BudgetExceeded, InvalidRequest, LimitsUnavailable, PermissionDenied, RateLimited
from gateway.vocab.limits import (
    NO_LIMITS,
    BudgetCheck,
    Hold,
    LimitSet,
    RateCheck,
    RateState,
    budget_check,
    hold_ttl_s,
    period_start,
    period_ttl_s,
    rate_checks,
    ratelimit_headers,
    worst_case_cost,
)
from gateway.vocab.pricing import Priced, prompt_tokens
from gateway.vocab.settings import Backend, LimitsSettings, RoutingSettings
from gateway.vocab.wire import ChatCompletionRequest

log = logging.getLogger("gateway.limits")
T = TypeVar("T")


class TenantLimitsSource(Protocol):
    async def get(self, tenant: str) -> LimitSet | None: ...


class SpendSource(Protocol):
    async def spent(self, scope: str, owner: str, since: dt.datetime | None) -> float: ...


class LimitStats(msgspec.Struct):
    rate_limited: int = 0
    budget_refused: int = 0
    redis_errors: int = 0
    served_unlimited: int = 0  # requests let through unchecked because Redis was unreachable (fail open)
    redis_up: bool = True
    last_error: str | None = None


class Ticket:
    """What admission took for one request, to settle when it ends (exactly once)."""

    __slots__ = ("budget_share", "budgets", "checks", "hold", "peeked", "principal", "prompt_estimate",
                 "reserved_usd", "settled", "states", "tenant_limits")

    def __init__(self, principal: Principal, tenant_limits: LimitSet) -> None:
        self.principal = principal
        self.tenant_limits = tenant_limits
        self.checks: list[RateCheck] = []
        self.states: list[RateState] = []
        self.budgets: list[BudgetCheck] = []
        self.reserved_usd = 0.0
        self.hold: Hold | None = None  # also when Redis failed open: the spend is still settled, late
        self.settled = False
        self.prompt_estimate: int | None = None  # every billed part of the prompt, once a limit needs it
        self.budget_share: float | None = None  # the largest share of a budget used, read on admission
        self.peeked: tuple[bytes | None, ...] = ()  # (value,): the key `admit` was asked to peek at, read with it

    @property
    def headers(self) -> dict[str, str]:
        return ratelimit_headers(self.states) if self.states else {}


class Admission:
    def __init__(self, routing: RoutingSettings, limits: LimitsSettings | None = None,
                 counters: Counters | None = None, tenants: TenantLimitsSource | None = None,
                 spend: SpendSource | None = None, cache_ttl_s: float = 10.0) -> None:
        self.allow_n = routing.allow_n_greater_than_one
        self.default_model = routing.default_model
        self.cfg = limits or LimitsSettings()
        self.counters = counters
        self.tenants = tenants
        self.spend = spend
        self.cache_ttl_s = cache_ttl_s
        self.stats = LimitStats()
        self._tenant_cache: CachedLookup[str, LimitSet | None] = CachedLookup(cache_ttl_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self.replays = Replays(counters.settle, self.cfg.redis_timeout_s) if counters is not None else None

    # ------------------------------------------------------------------ 1. admit
    async def admit(self, principal: Principal, req: ChatCompletionRequest,
                    raw: dict[str, object] | None = None, peek: str | None = None) -> Ticket:
        """`raw`: the body as sent (OpenAI-compatible upstreams get, and bill, the fields `req` does not know).
        `peek`: a key of the counters' store (the exact cache's entry) to read in the same round trip, when the
        request takes rate windows: `ticket.peeked` is then `(value,)`, else `()` (read it yourself)."""
        if req.n is not None and req.n > 1 and not self.allow_n:
            raise InvalidRequest("n > 1 is not supported by this gateway; send n = 1 or leave it out",
                                 param="n", code="unsupported_value")
        ticket = Ticket(principal, await self._tenant_limits(principal.tenant))
        tokens = 0
        key_limits, tenant_limits = principal.limits, ticket.tenant_limits
        if any(lim.rate_limit_tpm is not None or lim.budget_usd is not None for lim in (key_limits, tenant_limits)):
            tokens = ticket.prompt_estimate = prompt_tokens(req, raw)
        checks = rate_checks("tenant", principal.tenant, tenant_limits, tokens)
        if principal.key_id is not None:  # a key's counters follow its lineage through rotations
            checks = rate_checks("key", principal.lineage or principal.key_id, key_limits, tokens) + checks
        if not checks or self.counters is None:
            return ticket
        # `auto` routing shifts down as a budget nears its end: read with the rate windows, in the same call
        reads = self.budgets(ticket, dt.datetime.now(dt.UTC)) if (req.model or self.default_model) == "auto" else []
        taken = await self._guarded(self.counters.take(checks, reads, peek), self.cfg.rates_on_redis_error,
                                    "rate limits")
        if taken is None:
            return ticket
        ticket.states, ticket.peeked = taken.states, taken.peeked
        if reads:
            ticket.budget_share = share(reads, taken.used_usd)
        if taken.refused is not None:
            self.stats.rate_limited += 1
            c = taken.refused
            unit = "requests" if c.kind == "requests" else "tokens"
            wait_s = max(1, -(-taken.retry_ms // 1000))
            err = RateLimited(f"Rate limit reached for this {c.scope} on {unit} per minute: limit {c.limit}, "
                              f"requested {c.cost}. Please try again in {wait_s}s.")
            err.type = unit
            err.headers = {"retry-after": str(wait_s), **ticket.headers}
            raise err
        ticket.checks = checks
        return ticket

    # ------------------------------------------------------------------ 2. check the route
    @staticmethod
    def tier_allowed(ticket: Ticket, tier: str | None) -> bool:
        t = tier or "direct"
        return all(not lim.allowed_tiers or t in lim.allowed_tiers
                   for lim in (ticket.principal.limits, ticket.tenant_limits))

    def check_route(self, ticket: Ticket, tier: str | None) -> None:
        if not self.tier_allowed(ticket, tier):
            allowed = sorted(set(ticket.principal.limits.allowed_tiers or ("simple", "medium", "complex", "direct"))
                             & set(ticket.tenant_limits.allowed_tiers or ("simple", "medium", "complex", "direct")))
            raise PermissionDenied(f"This API key may not use the {tier or 'direct'} route; "
                                   f"allowed: {', '.join(allowed) or 'none'}")

    # ------------------------------------------------------------------ before routing: how near a budget
    def budgets(self, ticket: Ticket, now: dt.datetime) -> list[BudgetCheck]:
        p = ticket.principal
        return [b for b in (budget_check("key", p.lineage or p.key_id, p.limits, now) if p.key_id else None,
                            budget_check("tenant", p.tenant, ticket.tenant_limits, now)) if b is not None]

    async def budget_used(self, ticket: Ticket) -> float:
        """The largest share of a budget (the key's or the tenant's) spent or held; 0 without budgets. Read on
        admission when the request took rate windows, else here."""
        if ticket.budget_share is not None:
            return ticket.budget_share
        if self.counters is None:
            return 0.0
        budgets = self.budgets(ticket, dt.datetime.now(dt.UTC))
        return share(budgets, [await self._guarded(self.counters.used(b), "open", "budgets") for b in budgets])

    # ------------------------------------------------------------------ 3. reserve the worst case
    async def reserve(self, ticket: Ticket, chain: tuple[Backend, ...], req: ChatCompletionRequest,
                      then: tuple[Backend, ...] = ()) -> None:
        """Hold the request's worst-case cost on its budgets; `then`: a cascade's next chain, which may be
        called after the first, so both are held."""
        now = dt.datetime.now(dt.UTC)
        budgets = self.budgets(ticket, now)
        if not budgets or self.counters is None:
            return
        p = prompt_tokens(req) if ticket.prompt_estimate is None else ticket.prompt_estimate
        amount = worst_case_cost(p, req.output_limit, chain) + worst_case_cost(p, req.output_limit, then)
        ttls = [period_ttl_s(b.period) or 0 for b in budgets]
        hold = Hold(secrets.token_hex(8), amount, hold_ttl_s(chain + then, self.cfg.hold_margin_s))
        counters = self.counters
        for _ in range(len(budgets) + 1):
            got = await self._guarded(counters.reserve(budgets, hold, ttls), self.cfg.budgets_on_redis_error,
                                      "budgets")
            if got is None:  # served open: its spend is still settled (replayed until Redis answers),
                ticket.budgets, ticket.hold = budgets, hold  # which also frees a hold this call left late
                return
            if got.missing is None:
                break
            b = got.missing
            spent = await self._spent(b, now)
            await self._guarded(counters.init_spend(b, spent, period_ttl_s(b.period) or 0),
                                self.cfg.budgets_on_redis_error, "budgets")
        else:
            return
        if got.refused is not None:
            self.stats.budget_refused += 1
            b = got.refused
            raise BudgetExceeded(
                f"This {b.scope}'s budget of ${b.budget_usd:.4f} ({b.period}) does not cover this request: "
                f"${got.spent_usd:.6f} spent, ${got.reserved_usd:.6f} held by requests in flight, and this one "
                f"may cost up to ${amount:.6f}. Lower max_tokens, use a cheaper model, or raise the budget.")
        ticket.budgets, ticket.reserved_usd, ticket.hold = budgets, amount, hold

    # ------------------------------------------------------------------ 4. settle
    def settle(self, ticket: Ticket | None, priced: Priced | None, from_cache: bool = False) -> None:
        """Off the request path: completion tokens onto the token limits, the reservation to the real cost."""
        if ticket is None or ticket.settled:
            return
        ticket.settled = True
        tokens = 0 if priced is None or from_cache else priced.usage.completion_tokens
        if tokens and priced is not None and not priced.usage.estimated and ticket.prompt_estimate is not None:
            tokens += max(0, priced.usage.prompt_tokens - ticket.prompt_estimate)  # settled on what was billed
        token_checks = [c for c in ticket.checks if c.kind == "tokens"]
        if self.counters is None or not ((token_checks and tokens) or ticket.budgets):
            return
        task = asyncio.create_task(self._settle(ticket, token_checks, tokens, 0.0 if priced is None else
                                                priced.cost_usd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, ticket: Ticket, token_checks: list[RateCheck], tokens: int, cost: float) -> None:
        """One call: the tokens onto their windows, the hold settled. A settlement that fails is tried again
        until Redis answers (`Replays`, the budgets only: tokens of a window gone by would count nowhere)."""
        assert self.counters is not None
        hold = ticket.hold if ticket.budgets else None
        settled = await self._guarded(self.counters.settle(ticket.budgets, hold, cost, token_checks, tokens), "open",
                                      "budgets" if hold is not None else "rate limits")
        if settled is None and hold is not None and self.replays is not None:
            self.replays.add(ticket.budgets, hold, cost)

    async def drain(self) -> None:
        """At shutdown: the settlements under way, then one last try of those waiting for Redis."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.replays is not None:
            await self.replays.close()

    # ------------------------------------------------------------------ helpers
    async def _guarded(self, call: Awaitable[T], on_error: str, what: str) -> T | None:
        """The counter call, or None when Redis fails and this limit fails open (503 when closed)."""
        try:
            result = await within(call, self.cfg.redis_timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self.stats.redis_errors += 1
            if self.stats.redis_up:
                log.warning("limits: Redis unreachable (%s); %s fail %s", type(exc).__name__, what, on_error)
            self.stats.redis_up = False
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if on_error == "closed":
                raise LimitsUnavailable(f"cannot check {what}: their store is unreachable") from None
            self.stats.served_unlimited += 1
            return None
        self.stats.redis_up = True
        return result

    async def ticket_without_rates(self, principal: Principal) -> Ticket:
        """A ticket for a request that draws on no counter (a dry run): the tier checks only."""
        return Ticket(principal, await self._tenant_limits(principal.tenant))

    async def _tenant_limits(self, tenant: str) -> LimitSet:
        tenants = self.tenants
        if tenants is None:
            return NO_LIMITS
        try:
            return await self._tenant_cache.get(tenant, lambda: tenants.get(tenant)) or NO_LIMITS
        except SourceDown as exc:  # database away and this tenant not seen yet: no tenant limits meanwhile
            log.warning("limits: cannot read tenant limits (%s)", exc)
            return NO_LIMITS

    def forget_tenant(self, tenant: str) -> None:
        """After a change through this process's API, the new limits apply at once here."""
        self._tenant_cache.forget(tenant)

    def on_change(self, kind: str, ident: str) -> None:
        """A change announced by any gateway process (`gateway.infra.changes`): "*" is anything."""
        if kind == "tenant":
            self.forget_tenant(ident)
        elif kind == "*":
            self._tenant_cache.forget_where(lambda _: True)

    async def _spent(self, b: BudgetCheck, now: dt.datetime) -> float:
        if self.spend is None:
            return 0.0
        try:
            return await within(self.spend.spent(b.scope, b.owner, period_start(b.period, now)), 2.0)
        except Exception as exc:
            log.warning("limits: cannot rebuild the %s %s's spend from the request log (%s); starting at 0",
                        b.scope, b.owner, type(exc).__name__)
            return 0.0


def share(budgets: list[BudgetCheck], used: list[float | None]) -> float:
    """The largest share of a budget used (None: not known, or not read), 0 with none."""
    return max((u / b.budget_usd for b, u in zip(budgets, used, strict=True) if u is not None and b.budget_usd > 0),
               default=0.0)
