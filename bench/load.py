"""Closed-loop HTTP load generator (its own process): N requests at concurrency C, JSON or SSE.

Prints one JSON object: requests, errors, seconds, rps, p50_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import aiohttp


async def run(
    url: str, bodies: list[bytes], headers: dict[str, str], stream: bool, concurrency: int, total: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                body = bodies[remaining % len(bodies)]
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        if stream:
                            async for _ in r.content:
                                pass
                        else:
                            await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        # Warm-up: one request per connection.
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies), "errors": errors, "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--body", help="one JSON body for every request")
    p.add_argument("--bodies", help="a file of JSON bodies, one a line, used in turn")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=200)
    a = p.parse_args()
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
        result = asyncio.run(run(a.url, bodies, headers, a.stream, a.concurrency, a.requests))
    else:
        result = uvloop.run(run(a.url, bodies, headers, a.stream, a.concurrency, a.requests))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
