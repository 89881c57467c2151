"""Load shapes shared by the classifier benchmarks: the prompts and the latency/throughput measurement.
Imports nothing beyond router_core, so it also runs on a bare GPU machine (`bench/gpu.py`)."""

from __future__ import annotations

import asyncio
import statistics
import time

from router_core.classifiers.base import Classifier
from router_core.types import Conversation

# About 200 tokens (MiniLM tokenizer, with the " (variant N)" suffix).
PROMPT = ("Our team runs a Django monolith backed by PostgreSQL that serves about 2,000 requests per second at "
          "peak. Latency p99 has crept from 180 ms to 900 ms over three months; CPU on the database is at 85 %, "
          "and the slow query log shows a handful of ORM-generated joins across orders, customers and invoices "
          "with sequential scans. We also see lock waits during the nightly batch that recomputes loyalty points. "
          "Explain, step by step, how you would investigate this, which indexes or query rewrites you would try "
          "first, whether to move the batch to a read replica, and how to verify each change safely in production "
          "without an outage. Keep the answer practical and ordered by expected impact, and say which metrics "
          "in pg_stat_statements and the application traces would tell us that each step worked, assuming a team "
          "of two engineers and one weekly maintenance window.")

SHORT = "How do I reverse a linked list in Python without recursion?"  # 20 tokens

HEADER = ["| classifier | p50 ms (1 at a time) | p99 ms | per s at 1 | per s at 8 | per s at 32 | 32 vs 1 "
          "| p50 ms at 32 |", "|---|---|---|---|---|---|---|---|"]


async def measure(clf: Classifier, n: int, concurrency: int, prompt: str = PROMPT) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, prompts per second) over `n` prompts sent `concurrency` at a time."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        conv = Conversation.from_prompt(f"{prompt} (variant {i})")
        t0 = time.perf_counter()
        await clf.score(conv)
        latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    for i in range(0, n, concurrency):
        await asyncio.gather(*(one(i + j) for j in range(min(concurrency, n - i))))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], n / elapsed


async def row(name: str, clf: Classifier, prompt: str, n: int) -> str:
    """One table row: warm-up, then one at a time (latency) and 8 and 32 at a time (throughput, and
    the latency a request sees among 32). An `n` under 8 (a smoke run) also cuts the warm-up and the one at a
    time runs to `n` prompts."""
    await measure(clf, min(8, n), 1, prompt)
    p50, p99, r1 = await measure(clf, max(n // 4, min(8, n)), 1, prompt)
    _, _, r8 = await measure(clf, n, 8, prompt)
    p50_32, _, r32 = await measure(clf, n, 32, prompt)
    return (f"| {name} | {p50:.2f} | {p99:.2f} | {r1:,.0f} | {r8:,.0f} | {r32:,.0f} | {r32 / r1:.1f}x "
            f"| {p50_32:.1f} |")
