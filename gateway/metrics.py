"""Prometheus metrics of one gateway process (`GET /metrics`, text exposition format 0.0.4).

Counters are per process, as Prometheus expects: each replica is scraped on its own and the server
sums them. They are fed from the same place as the request log (`Gateway.record`) and read the
cache's and the log writer's own counters, so nothing here is a second source of truth.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

# Request duration buckets in seconds: an exact cache hit is ~1 ms, an LLM answer seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RequestLabels = tuple[str, str, str, str, str]  # endpoint, status, tier, backend, cache


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[RequestLabels] = Counter()
        self.duration_counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.duration_sum: defaultdict[str, float] = defaultdict(float)
        self.tokens: Counter[tuple[str, str]] = Counter()        # (backend, prompt|completion)
        self.cost_usd: defaultdict[str, float] = defaultdict(float)     # backend
        self.savings_usd: defaultdict[str, float] = defaultdict(float)  # backend

    def observe(self, endpoint: str, status: int, tier: str | None, backend: str | None, cache: str,
                seconds: float, prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0,
                savings_usd: float = 0.0) -> None:
        b = backend or ""
        self.requests[(endpoint, str(status), tier or "", b, cache)] += 1
        self.duration_counts[endpoint][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum[endpoint] += seconds
        if prompt_tokens or completion_tokens:
            self.tokens[(b, "prompt")] += prompt_tokens
            self.tokens[(b, "completion")] += completion_tokens
        if cost_usd or savings_usd:
            self.cost_usd[b] += cost_usd
            self.savings_usd[b] += savings_usd


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float | int | bool) -> str:
    return repr(float(v)) if isinstance(v, float) else str(int(v))


def render(m: Metrics, cache: Mapping[str, object] | None, writer: Mapping[str, object] | None,
           limits: Mapping[str, object] | None = None, circuits: Mapping[str, str] | None = None) -> str:
    """The exposition text: request counters and durations, tokens, cost and savings, then the cache's,
    the request-log writer's and the limits' counters (absent when that part is off)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("smr_requests_total", "counter",
           "Requests answered, by endpoint, HTTP status, tier, backend and cache status.")
    for labels, n in sorted(m.requests.items()):
        out.append(f"smr_requests_total{_labels(('endpoint', 'status', 'tier', 'backend', 'cache'), labels)} {n}")
    family("smr_request_duration_seconds", "histogram", "Time from the request's arrival to its last byte.")
    for endpoint, counts in sorted(m.duration_counts.items()):
        ep = _labels(("endpoint",), (endpoint,))
        running = 0
        for bound, c in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
            running += c
            out.append(f"smr_request_duration_seconds_bucket{_labels(('endpoint', 'le'), (endpoint, bound))} {running}")
        out.append(f"smr_request_duration_seconds_sum{ep} {m.duration_sum[endpoint]!r}")
        out.append(f"smr_request_duration_seconds_count{ep} {running}")
    family("smr_tokens_total", "counter", "Tokens billed by the upstream, by backend and kind.")
    for (backend, kind), n in sorted(m.tokens.items()):
        out.append(f"smr_tokens_total{_labels(('backend', 'kind'), (backend, kind))} {n}")
    family("smr_cost_usd_total", "counter", "Upstream cost in USD, by backend (cache hits cost nothing).")
    for backend, v in sorted(m.cost_usd.items()):
        out.append(f"smr_cost_usd_total{_labels(('backend',), (backend,))} {v!r}")
    family("smr_savings_usd_total", "counter", "Saved against always calling the baseline model, in USD.")
    for backend, v in sorted(m.savings_usd.items()):
        out.append(f"smr_savings_usd_total{_labels(('backend',), (backend,))} {v!r}")
    if circuits:
        family("smr_backend_circuit_open", "gauge",
               "1 while the backend is out of its chains after repeated failures (0.5: being probed).")
        for backend, state in sorted(circuits.items()):
            gauge = {"closed": "0", "half_open": "0.5", "open": "1"}[state]
            out.append(f"smr_backend_circuit_open{_labels(('backend',), (backend,))} {gauge}")
    parts = (("smr_cache", cache, "response cache"), ("smr_request_log", writer, "request-log writer"),
             ("smr_limits", limits, "rate limits' and budgets'"))
    for prefix, part, what in parts:
        if part is None:
            continue
        for key, value in part.items():
            if isinstance(value, bool):
                family(f"{prefix}_{key}", "gauge", f"The {what}'s {key.replace('_', ' ')} (1 = yes).")
                out.append(f"{prefix}_{key} {int(value)}")
            elif isinstance(value, int | float):
                kind = "gauge" if key == "buffered" else "counter"
                name = f"{prefix}_{key}" + ("_total" if kind == "counter" else "")
                family(name, kind, f"The {what}'s {key.replace('_', ' ')} count.")
                out.append(f"{name} {_number(value)}")
    return "\n".join(out) + "\n"
