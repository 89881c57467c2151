"""Cache speed through HTTP: exact hit and semantic hit latency against a miss, one client at a time."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

from bench.load import measured
from bench.procs import Zygote, cached_gateway_backing, serve_gateway

BASE = "How do I reverse a list in Python without modifying the original?"


def body(prompt: str) -> str:
    return json.dumps({"model": "smr/simple", "messages": [{"role": "user", "content": prompt}]})


def files(n: int, r: int) -> dict[str, list[str]]:
    return {
        # every prompt new: lookup (exact + semantic) misses, the upstream answers, the answer is stored
        "miss": [body(f"Question {i} of run {r}: what is {i} squared plus {i + 7 * r}?") for i in range(n)],
        # the very same request again and again
        "exact hit": [body(BASE)],
        # the same words, other spacing: a new exact key, an identical embedding, so the semantic path
        "semantic hit": [body(BASE.replace(" ", "  ", k % 9 + 1) + " " * (k // 9 + r * 50)) for k in range(n)],
    }


def write(tmp: Path, n: int, r: int) -> dict[str, Path]:
    paths = {}
    for name, bodies in files(n, r).items():
        paths[name] = tmp / f"{name.replace(' ', '_')}-{r}.jsonl"
        paths[name].write_text("\n".join(bodies) + "\n")
    return paths


def run(smoke: bool, zygote: Zygote | None = None) -> list[str]:
    """The table; `zygote` (smoke): the upstream and the gateway forked from it."""
    n = 5 if smoke else 400  # smoke: every kind of request answered, no figure read
    repeats = 1 if smoke else 3
    results: dict[str, list[dict[str, float]]] = {}
    with cached_gateway_backing("cache", zygote) as (tmp, config):
        cfg = tmp / "cache.toml"
        cfg.write_text(config)
        gateway = serve_gateway("cache-gateway", cfg, tmp, zygote=zygote)
        url = f"http://127.0.0.1:{gateway.port}/v1/chat/completions"
        try:
            measured(["--url", url, "--bodies", str(write(tmp, n, 0)["exact hit"]), "--requests", "3"],
                     in_process=smoke)  # stores BASE
            for r in range(repeats):
                for name, path in write(tmp, n, r + 1).items():
                    results.setdefault(name, []).append(
                        measured(["--url", url, "--bodies", str(path), "--requests", str(n)], in_process=smoke))
            health = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{gateway.port}/health"],
                                               capture_output=True, text=True).stdout or "{}")
        finally:
            gateway.stop()
    cache = health.get("cache") or {}
    rows = ["| request | p50 ms | p99 ms | req/s | errors |", "|---|---|---|---|---|"]
    for name, rs in results.items():
        p50, p99 = statistics.median(r["p50_ms"] for r in rs), statistics.median(r["p99_ms"] for r in rs)
        rps, errors = statistics.median(r["rps"] for r in rs), sum(int(r["errors"]) for r in rs)
        rows.append(f"| {name} | {p50:.2f} | {p99:.2f} | {rps:,.0f} | {errors} |")
    rows += ["", f"Cache store: {cache.get('store')}, embeddings on {cache.get('device')} ({cache.get('embedding_backend')}); counters after the run: "
                 f"{cache.get('hits_exact')} exact hits, {cache.get('hits_semantic')} semantic hits, "
                 f"{cache.get('misses')} misses, {cache.get('guard_rejections')} guard rejections."]
    return rows
