"""The server stack side by side: the same gateway on uvicorn's C stack (httptools + uvloop, what it
takes when they are installed, as the project installs them) with redis-py's hiredis parser, without
hiredis, and on the pure-Python fallback (h11 on asyncio's loop, redis-py's own parser: what plain
`pip install uvicorn redis` gives), alternated in one run.

The other gateways are started with those modules made unimportable, so uvicorn's `auto` choice and
redis-py fall back exactly as they would where the modules are missing; nothing in the product changes.
"""

from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor

from bench.libssl import share_libssl11
from bench.load import measured
from bench.procs import Proc, Zygote, cached_gateway_backing, cpu_seconds, python, serve_gateway, stop_together

BODY = json.dumps({"model": "smr/simple", "messages": [{"role": "user", "content": "What is a Python tuple?"}]})


def without(*modules: str) -> list[str]:
    """The gateway's command line with these modules made unimportable (their users fall back)."""
    blocked = " = ".join(f"sys.modules[{m!r}]" for m in modules)
    return [python(), "-c", f"import sys; {blocked} = None; from gateway.cli import main; sys.exit(main())"]


STACKS = {"httptools + uvloop + hiredis": [python(), "-m", "gateway.cli"],
          "httptools + uvloop": without("hiredis"),
          "h11 + asyncio": without("uvloop", "httptools", "hiredis")}
REQUESTS = {"exact cache hit": [], "upstream call (cache off)": ["--header", "x-smr-cache: off"]}


def run(smoke: bool, zygote: Zygote | None = None) -> list[str]:
    """The table; `zygote` (smoke): the upstream and the first stack (the plain command line) forked from it."""
    n = 30 if smoke else 1000
    repeats = 1 if smoke else 3
    gateways: dict[str, Proc] = {}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    share_libssl11()  # the gateways start at once: one libssl1.1 for their Redis servers, fetched before
    with cached_gateway_backing("stack", zygote, log_requests=False) as (tmp, config):
        cfg = tmp / "stack.toml"
        cfg.write_text(config.replace("[cache]\n", "[cache]\nsemantic = false\n"))  # exact hits need no model
        try:
            # Started side by side: each start-up waits on its imports and a health poll, not on the others.
            with ThreadPoolExecutor(len(STACKS)) as pool:
                started = {name: pool.submit(serve_gateway, f"stack-{i}", cfg, tmp, cmd, zygote=zygote)
                           for i, (name, cmd) in enumerate(STACKS.items())}
            gateways.update({name: f.result() for name, f in started.items() if f.exception() is None})
            for f in started.values():
                f.result()  # one that did not start raises here; the ones that did are stopped below
            for _ in range(repeats):
                for name, proc in gateways.items():
                    for request, extra in REQUESTS.items():
                        args = ["--url", f"http://127.0.0.1:{proc.port}/v1/chat/completions", "--body", BODY,
                                *extra]
                        if not smoke:  # smoke: the run itself is the check, no figure is read
                            measured([*args, "--requests", "20"])  # warm
                        cpu0 = cpu_seconds(proc.pid)
                        r = measured([*args, "--requests", str(n)], in_process=smoke)
                        r["cpu_ms"] = (cpu_seconds(proc.pid) - cpu0) * 1000 / n
                        results.setdefault((name, request), []).append(r)
        finally:
            stop_together(list(gateways.values()))

    def med(key: tuple[str, str], field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    rows = ["| server stack | request | p50 ms | p99 ms | req/s | gateway CPU ms / request | errors |",
            "|---|---|---|---|---|---|---|"]
    for (name, request), rs in results.items():
        rows.append(f"| {name} | {request} | {med((name, request), 'p50_ms'):.2f} | {med((name, request), 'p99_ms'):.2f} "
                    f"| {med((name, request), 'rps'):,.0f} | {med((name, request), 'cpu_ms'):.2f} | "
                    f"{sum(int(r['errors']) for r in rs)} |")
    slow = list(STACKS)[-1]
    for fast in list(STACKS)[:-1]:
        for request in REQUESTS:
            rows.append(f"\n{request}, {fast} over {slow}: p50 "
                        f"{med((fast, request), 'p50_ms') / med((slow, request), 'p50_ms'):.2f}x, CPU per request "
                        f"{med((fast, request), 'cpu_ms') / med((slow, request), 'cpu_ms'):.2f}x")
    return rows
