"""Prometheus metrics of one gateway process (`GET /metrics`, text exposition format 0.0.4).

Counters are per process, as Prometheus expects: each replica is scraped on its own and the server
sums them. They are fed from the same place as the request log (`Gateway.record`) and read the
cache's and the log writer's own counters, so nothing here is a second source of truth.

Two probes say when the event loop stalls (every request on the process waits then): `LoopLag`, a timer
due every 0.1 s that records how late it runs (`smr_event_loop_lag_seconds`), and `GcPauses`, the time
each garbage collection took (`smr_gc_pause_seconds`). Under `smr serve --workers N` every series carries
`worker="i"` and `/metrics` on any worker shows all of them (`merge`, from the snapshots the others write).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

# Request duration buckets in seconds: an exact cache hit is ~1 ms, an LLM answer seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RequestLabels = tuple[str, str, str, str, str]  # endpoint, status, tier, backend, cache
# Event-loop lag and GC pause buckets: a healthy loop runs its timers within a millisecond.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """One histogram's buckets (not cumulative), sum and count."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    def lines(self, name: str, names: tuple[str, ...] = (), values: tuple[str, ...] = ()) -> list[str]:
        out, running = [], 0
        for bound, c in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += c
            out.append(f"{name}_bucket{_labels((*names, 'le'), (*values, bound))} {running}")
        out.append(f"{name}_sum{_labels(names, values)} {self.sum!r}")
        out.append(f"{name}_count{_labels(names, values)} {running}")
        return out


class LoopLag:
    """A timer due every `every_s` on the event loop; how late each one runs is the loop's lag (a stall:
    a long callback, a batch encoded in one go, a GC pass). Also the longest lag of the last minute."""

    WINDOW_S = 60.0

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.hist = Histogram(LAG_BUCKETS)
        self._slots: list[tuple[float, float]] = []  # (slot start, longest lag in it), 10 s slots
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def observe(self, lag: float, now: float) -> None:
        self.hist.observe(lag)
        slot = now - now % 10.0
        if self._slots and self._slots[-1][0] == slot:
            self._slots[-1] = (slot, max(self._slots[-1][1], lag))
        else:
            self._slots = [s for s in self._slots if s[0] > now - self.WINDOW_S] + [(slot, lag)]

    def longest(self, now: float) -> float:
        return max((lag for start, lag in self._slots if start > now - self.WINDOW_S), default=0.0)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.every_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.observe(max(0.0, now - self._due), time.monotonic())
        self._due = now + self.every_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None


class GcPauses:
    """The duration of each garbage collection, by generation (`gc.callbacks`, while installed)."""

    def __init__(self) -> None:
        self.hists = [Histogram(LAG_BUCKETS) for _ in range(3)]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.hists[min(info.get("generation", 0), 2)].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


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


# Values that go down as well as up; every other number in a part is a counter.
_GAUGES = frozenset({"buffered", "threshold", "threshold_checks", "wrong_hit_rate"})


def render(m: Metrics, cache: Mapping[str, object] | None, writer: Mapping[str, object] | None,
           limits: Mapping[str, object] | None = None, circuits: Mapping[str, str] | None = None,
           lag: LoopLag | None = None, gc_pauses: GcPauses | None = None,
           learning: Mapping[str, object] | None = None) -> str:
    """The exposition text: request counters and durations, tokens, cost and savings, the event loop's lag
    and GC pauses, then the cache's, the request-log writer's and the limits' counters (absent when that
    part is off), and the learning worker's (second opinions and semantic-cache checks)."""
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
    if lag is not None:
        family("smr_event_loop_lag_seconds", "histogram",
               f"How late a timer due every {lag.every_s:g} s ran: how long the event loop was stalled.")
        out += lag.hist.lines("smr_event_loop_lag_seconds")
        family("smr_event_loop_lag_max_seconds", "gauge", "The longest event-loop lag of the last minute.")
        out.append(f"smr_event_loop_lag_max_seconds {lag.longest(time.monotonic())!r}")
    if gc_pauses is not None:
        family("smr_gc_pause_seconds", "histogram", "How long each garbage collection took, by generation.")
        for generation, h in enumerate(gc_pauses.hists):
            out += h.lines("smr_gc_pause_seconds", ("generation",), (str(generation),))
        family("smr_gc_frozen_objects", "gauge",
               "Objects moved out of the collector's walks after start-up (server.tune_gc; 0: off).")
        out.append(f"smr_gc_frozen_objects {gc.get_freeze_count()}")
    if circuits:
        family("smr_backend_circuit_open", "gauge",
               "1 while the backend is out of its chains after repeated failures (0.5: being probed).")
        for backend, state in sorted(circuits.items()):
            gauge = {"closed": "0", "half_open": "0.5", "open": "1"}[state]
            out.append(f"smr_backend_circuit_open{_labels(('backend',), (backend,))} {gauge}")
    parts = (("smr_cache", cache, "response cache"), ("smr_request_log", writer, "request-log writer"),
             ("smr_limits", limits, "rate limits' and budgets'"), ("smr_learning", learning, "learning worker's"))
    for prefix, part, what in parts:
        if part is None:
            continue
        for key, value in part.items():
            if isinstance(value, bool):
                family(f"{prefix}_{key}", "gauge", f"The {what}'s {key.replace('_', ' ')} (1 = yes).")
                out.append(f"{prefix}_{key} {int(value)}")
            elif isinstance(value, int | float):
                kind = "gauge" if key in _GAUGES else "counter"
                name = f"{prefix}_{key}" + ("_total" if kind == "counter" else "")
                family(name, kind, f"The {what}'s {key.replace('_', ' ')} count.")
                out.append(f"{name} {_number(value)}")
    return "\n".join(out) + "\n"


def with_label(text: str, name: str, value: str) -> str:
    """The same exposition text with `name="value"` added to every series (e.g. `worker="0"`)."""
    pair = f'{name}="{_escape(value)}"'
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            cut = min(i for i in (line.find("{"), line.find(" ")) if i >= 0)
            line = (line[:cut + 1] + pair + ("," if line[cut + 1] != "}" else "") + line[cut + 1:]
                    if line[cut] == "{" else f"{line[:cut]}{{{pair}}}{line[cut:]}")
        out.append(line)
    return "\n".join(out) + "\n"


def merge(texts: Iterable[str]) -> str:
    """Several processes' exposition texts as one: each family's HELP and TYPE once, then every
    process's series of it (they differ by a label such as `worker`)."""
    families: dict[str, list[str]] = {}
    heads: dict[str, list[str]] = {}
    current = ""
    for text in texts:
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                current = line.split(" ", 3)[2]
                if current not in families:
                    families[current], heads[current] = [], []
                if len(heads[current]) < 2 and not any(h[:6] == line[:6] for h in heads[current]):
                    heads[current].append(line)
            elif line and current:
                families[current].append(line)
    return "".join("\n".join([*heads[f], *lines]) + "\n" for f, lines in families.items())


class WorkerSlot(msgspec.Struct, frozen=True):
    """This process's place under `smr serve --workers N`: its index and the folder where every worker
    writes its metrics snapshot (`worker-<index>.prom`) for the others' `/metrics`."""

    index: int
    count: int
    folder: str

    def snapshot(self, index: int | None = None) -> Path:
        return Path(self.folder) / f"worker-{self.index if index is None else index}.prom"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
