"""Classifier latency (one prompt at a time) and throughput at 1, 8 and 32 concurrent requests."""

from __future__ import annotations

import asyncio
import statistics
import time

from gateway.fakes.common import Behaviour
from gateway.fakes.server import FakeUpstreams
from router_core.classifiers.base import Classifier
from router_core.classifiers.embedding import EmbeddingClassifier
from router_core.classifiers.heuristic import HeuristicClassifier
from router_core.classifiers.ollama_llm import OllamaLLMClassifier
from router_core.embedder import Embedder
from router_core.types import Conversation

# About 200 tokens (MiniLM tokenizer, with the " (variant N)" suffix).
PROMPT = ("Our team runs a Django monolith backed by PostgreSQL that serves about 2,000 requests per second at "
          "peak. Latency p99 has crept from 180 ms to 900 ms over three months; CPU on the database is at 85 %, "
          "and the slow query log shows a handful of ORM-generated joins across orders, customers and invoices "
          "with sequential scans. We also see lock waits during the nightly batch that recomputes loyalty points. "
          "Explain, step by step, how you would investigate this, which indexes or query rewrites you would try "
          "first, whether to move the batch to a read replica, and how to verify each change safely in production "
          "without an outage. Keep the answer practical and ordered by expected impact, and say which metrics "
          "in pg_stat_statements and the application traces would tell us that each step worked, assuming a team of two engineers and one weekly maintenance window.")


SHORT = "How do I reverse a linked list in Python without recursion?"  # 20 tokens


async def measure(clf: Classifier, n: int, concurrency: int, prompt: str = PROMPT) -> tuple[float, float, float]:
    latencies: list[float] = []

    async def one(i: int) -> None:
        conv = Conversation.from_prompt(f"{prompt} (variant {i})")
        t0 = time.perf_counter()
        await clf.score(conv)
        latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    for i in range(0, n, concurrency):
        await asyncio.gather(*(one(i + j) for j in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], n / elapsed


async def _run(smoke: bool) -> list[str]:
    n = 32 if smoke else 256
    fakes = FakeUpstreams()
    await fakes.start()
    fakes.ollama.behaviour = Behaviour(reply="MEDIUM")
    embedder = Embedder().load()  # auto: ONNX Runtime on CPU, torch on CUDA
    other = Embedder(backend="torch").load() if embedder.backend == "onnx" and not smoke else None
    on = f"{embedder.backend}, {embedder.device}"
    classifiers: list[tuple[str, Classifier, str]] = [
        ("heuristic", HeuristicClassifier(), PROMPT),
        (f"embedding (MiniLM + head, {on}), 200 tokens", EmbeddingClassifier(embedder), PROMPT),
        (f"embedding (MiniLM + head, {on}), 20 tokens", EmbeddingClassifier(embedder), SHORT),
        ("llm (fake Ollama, no model time)", OllamaLLMClassifier(fakes.ollama_url, "granite4:350m", (0.35, 0.62)),
         PROMPT),
    ]
    if other is not None:
        classifiers[2:2] = [(f"embedding (MiniLM + head, torch, {other.device}), 200 tokens",
                             EmbeddingClassifier(other), PROMPT),
                            (f"embedding (MiniLM + head, torch, {other.device}), 20 tokens",
                             EmbeddingClassifier(other), SHORT)]
    rows = ["| classifier | p50 ms (1 at a time) | p99 ms | per s at 1 | per s at 8 | per s at 32 | 32 vs 1 |",
            "|---|---|---|---|---|---|---|"]
    try:
        for name, clf, prompt in classifiers:
            await measure(clf, 8, 1, prompt)  # warm-up
            p50, p99, r1 = await measure(clf, n // 4, 1, prompt)
            _, _, r8 = await measure(clf, n, 8, prompt)
            _, _, r32 = await measure(clf, n, 32, prompt)
            rows.append(f"| {name} | {p50:.2f} | {p99:.2f} | {r1:,.0f} | {r8:,.0f} | {r32:,.0f} | {r32 / r1:.1f}x |")
    finally:
        for e in (embedder, other):
            if e is not None:
                await e.aclose()
        await fakes.stop()
    return rows


def run(smoke: bool) -> list[str]:
    return asyncio.run(_run(smoke))
