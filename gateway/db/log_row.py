"""One request's row in the request log: its fields are the table's columns (the writer copies them in this
order; a new column is a field here and a migration)."""

from __future__ import annotations

import datetime as dt

import msgspec


class LogRow(msgspec.Struct, frozen=True):
    request_id: str
    ts: dt.datetime
    endpoint: str
    cache_status: str
    latency_ms: float
    http_status: int
    key_id: str | None = None
    tenant: str | None = None
    requested_model: str | None = None
    tier: str | None = None
    classifier: str | None = None
    score: float | None = None
    backend: str | None = None
    provider: str | None = None
    attempts: int = 0
    fallback_errors: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    savings_usd: float = 0.0
    usage_estimated: bool = False
    ttft_ms: float | None = None
    stream: bool = False
    error_type: str | None = None
    prompt: str | None = None
    explanation: str | None = None  # the response's `smr` object, as JSON
    cache_savings_usd: float = 0.0  # the part of savings_usd a cache hit saved (the rest: routing)
    shadow_tier: str | None = None  # shadow mode: what routing would have chosen, and its price
    shadow_backend: str | None = None
    shadow_cost_usd: float | None = None
    cascade_reason: str | None = None  # why a cheap answer went to the next tier
    client_request_id: str | None = None  # the client's x-request-id, when it sent one
