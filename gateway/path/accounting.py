"""One request's accounting: filled in as the request goes, turned into exactly one log row at the end.

`Accounting.record` is the one place a finished request is counted: the Prometheus counters of this
process and the request log (Postgres, written off the request path by `LogWriter`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

from gateway.db.log_row import LogRow
from gateway.infra.metrics import Metrics
from gateway.infra.request_ids import new_request_id
from gateway.path.admission import Ticket
from gateway.path.auth import Principal
from gateway.path.routing import Route
from gateway.vocab.errors import Attempt, GatewayError
from gateway.vocab.pricing import Priced
from gateway.vocab.settings import Backend
from gateway.vocab.wire import CascadeStep


class RequestContext:
    """Mutable on purpose: the request path and the stream fill it in as they learn things."""

    __slots__ = (
        "attempts",
        "backend",
        "cache",
        "cascade",
        "client_request_id",
        "endpoint",
        "explanation",
        "first_priced",
        "priced",
        "principal",
        "prompt",
        "recorded",
        "request_id",
        "requested_model",
        "route",
        "shadow",
        "shadow_priced",
        "started",
        "stream",
        "ticket",
        "ts",
        "ttft_ms",
    )

    def __init__(self, endpoint: str, principal: Principal | None = None, request_id: str | None = None,
                 client_request_id: str | None = None) -> None:
        self.request_id = request_id or new_request_id()
        self.client_request_id = client_request_id
        self.endpoint = endpoint
        self.ts = dt.datetime.now(dt.UTC)
        self.started = time.perf_counter()
        self.principal = principal
        self.requested_model: str | None = None
        self.route: Route | None = None
        self.backend: Backend | None = None
        self.attempts: list[Attempt] = []
        self.priced: Priced | None = None
        self.cache = "miss"
        self.stream = False
        self.ttft_ms: float | None = None
        self.prompt: str | None = None
        self.recorded = False
        self.explanation: str | None = None  # the `smr` object as JSON, logged with the row
        self.ticket: Ticket | None = None  # what admission took, settled when the request ends
        self.cascade: CascadeStep | None = None  # a cheap answer escalated, and what that first call cost
        self.first_priced: Priced | None = None
        self.shadow: Route | None = None  # shadow mode: what routing would have chosen ...
        self.shadow_priced: Priced | None = None  # ... priced on this answer's tokens

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def row(self, status: int, error: GatewayError | None = None) -> LogRow:
        p, r, b, pr = self.principal, self.route, self.backend, self.priced
        if error is not None and not self.attempts:
            self.attempts = list(getattr(error, "attempts", []))
        return LogRow(
            request_id=self.request_id, ts=self.ts, endpoint=self.endpoint, cache_status=self.cache,
            latency_ms=round(self.elapsed_ms(), 3), http_status=status,
            key_id=p.key_id if p else None, tenant=p.tenant if p else None,
            requested_model=self.requested_model, tier=r.tier if r else None,
            classifier=r.classifier if r else None, score=r.score if r else None,
            backend=b.name if b else None, provider=b.provider if b else None,
            attempts=len(self.attempts) + (1 if b else 0),
            fallback_errors="; ".join(f"{a.backend}: {a.error}" for a in self.attempts) or None,
            prompt_tokens=pr.usage.prompt_tokens if pr else 0,
            completion_tokens=pr.usage.completion_tokens if pr else 0,
            cost_usd=pr.cost_usd if pr else 0.0, baseline_cost_usd=pr.baseline_cost_usd if pr else 0.0,
            savings_usd=pr.savings_usd if pr else 0.0, usage_estimated=pr.usage.estimated if pr else False,
            ttft_ms=self.ttft_ms, stream=self.stream,
            error_type=(error.code or error.type) if error is not None else None, prompt=self.prompt,
            explanation=self.explanation, cache_savings_usd=pr.cache_savings_usd if pr else 0.0,
            shadow_tier=self.shadow.tier if self.shadow and self.shadow_priced else None,
            shadow_backend=self.shadow.chain[0].name if self.shadow and self.shadow_priced else None,
            shadow_cost_usd=self.shadow_priced.cost_usd if self.shadow_priced else None,
            cascade_reason=self.cascade.reason if self.cascade else None,
            client_request_id=self.client_request_id,
        )


class RequestLog(Protocol):
    """Where finished requests' rows go (`LogWriter`; a list in tests). Must never block or raise."""

    def record(self, row: LogRow) -> None: ...


class AccessLine(Protocol):
    """The per-request log line (`gateway.infra.logs.AccessLog`)."""

    def record(self, row: LogRow, key_prefix: str | None) -> None: ...


class Accounting:
    def __init__(self, metrics: Metrics, log: RequestLog | None, access: AccessLine | None = None) -> None:
        self.metrics = metrics
        self.log = log
        self.access = access

    def record(self, ctx: RequestContext, status: int, error: GatewayError | None = None) -> None:
        """Count a finished request once; a second call for the same request is ignored."""
        if ctx.recorded:
            return
        ctx.recorded = True
        p, r, b = ctx.priced, ctx.route, ctx.backend
        self.metrics.observe(ctx.endpoint, status, r.tier if r else None, b.name if b else None, ctx.cache,
                             ctx.elapsed_ms() / 1000, p.usage.prompt_tokens if p else 0,
                             p.usage.completion_tokens if p else 0, p.cost_usd if p else 0.0,
                             p.savings_usd if p else 0.0)
        if self.log is None and self.access is None:
            return
        row = ctx.row(status, error)
        if self.log is not None:
            self.log.record(row)
        if self.access is not None:
            self.access.record(row, ctx.principal.key_prefix if ctx.principal else None)
