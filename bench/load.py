"""Closed-loop HTTP load generator (its own process): N requests (or S seconds) at concurrency C, JSON or SSE;
with `--rate R`, the C clients together start at most R requests a second (a smoke run's light load).

Prints one JSON object: requests, errors, seconds, rps, p50_ms, p99_ms, statuses (count per HTTP status,
0 for a failed connection) and per_second (requests finished in each second of the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


async def run(
    url: str, bodies: list[bytes], headers: dict[str, str], stream: bool, concurrency: int, total: int,
    seconds: float | None = None, rate: float | None = None,
) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    remaining = total
    issued = 0  # with a rate: request k starts no sooner than k / rate seconds after the start
    statuses: dict[int, int] = {}
    finished_at: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        def more() -> bool:
            return (time.perf_counter() - started < seconds) if seconds is not None else remaining > 0

        async def worker() -> None:
            nonlocal remaining, errors, issued
            while more():
                if rate:
                    issued += 1
                    await asyncio.sleep(started + (issued - 1) / rate - time.perf_counter())
                    if not more():
                        break
                remaining -= 1
                body = bodies[remaining % len(bodies)]
                t0 = time.perf_counter()
                status = 0
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        status = r.status
                        if stream:
                            async for _ in r.content:
                                pass
                        else:
                            await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                t1 = time.perf_counter()
                latencies.append((t1 - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                finished_at.append(t1 - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    per_second = [0] * (int(elapsed) + 1)
    for t in finished_at:
        per_second[int(t)] += 1
    return {
        "requests": len(latencies), "errors": errors, "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0,
        "statuses": statuses, "per_second": per_second,
    }


def measure(argv: list[str] | None = None) -> dict[str, object]:
    """The run these command-line arguments ask for, in this process (what `main` prints)."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--body", help="one JSON body for every request")
    p.add_argument("--bodies", help="a file of JSON bodies, one a line, used in turn")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--seconds", type=float, help="run for this long instead of a number of requests")
    p.add_argument("--rate", type=float, help="start at most this many requests a second (all clients together)")
    a = p.parse_args(argv)
    headers = {"content-type": "application/json"}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    if a.bodies:
        with open(a.bodies, "rb") as f:
            bodies = [line.strip() for line in f if line.strip()]
    else:
        bodies = [a.body.encode()]
    try:  # the same event loop as the servers measured (uvicorn takes uvloop when it is installed)
        import uvloop
    except ImportError:
        return asyncio.run(run(a.url, bodies, headers, a.stream, a.concurrency, a.requests, a.seconds, a.rate))
    return uvloop.run(run(a.url, bodies, headers, a.stream, a.concurrency, a.requests, a.seconds, a.rate))


def measured(argv: list[str], in_process: bool = False) -> dict[str, Any]:
    """`python -m bench.load ARGV`'s result: in its own process (the client's CPU apart from the caller's), or,
    `in_process` (a smoke run: no figure is read, and an interpreter start-up is most of its time), in this one."""
    if in_process:
        return measure(argv)
    out = subprocess.run([sys.executable, "-m", "bench.load", *argv], cwd=ROOT, check=True, capture_output=True,
                         text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    json.dump(measure(), sys.stdout)


if __name__ == "__main__":
    main()
