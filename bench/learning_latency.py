"""Sampling never adds latency to the client: the gateway with learning off and with every answer sampled.

    python -m bench.learning_latency [--seconds 10] [--repeats 3] [--redis URL] [--smoke]

Started side by side on loopback: one fake OpenAI-compatible upstream (no think time), one scratch database,
one Redis (`--redis`, else REDIS_URL, else an embedded redis-stack-server this run starts), and two gateways
in front of them with the same config but `learning.sample_rate`: 0 (off) and 1.0 (every `auto` answer below
the reference tier gets a second opinion, with a daily learning budget far above what the run spends). wrk
(`/usr/bin/wrk`) drives both with the same `auto` requests, each a new prompt that asks for a number, so the
rule judge (`rule:number`) decides every sampled request without a judge model; at 1 and 8 connections, the
targets alternated and repeated (medians). The table gives p50/p99 from wrk, the ratio sampled/off, and the
learning worker's counters from `/metrics` after the run (sampled, judged, dropped because the queue was
full), which show that sampling happened. Printed, and written to bench/results/learning_latency.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from bench.hotpath import WRK, Run, parse_wrk, reported_rps
from bench.procs import (
    ROOT,
    WRK_CAP_LUA,
    Proc,
    Zygote,
    fake_openai,
    gateway_config,
    http_get,
    machine,
    run_wrk,
    serve_gateway,
    start_together,
)
from tests.scratch import ScratchDatabase

RESULTS = ROOT / "bench" / "results" / "learning_latency.md"
SIDES = (("learning off (sample_rate 0)", 0.0), ("learning on (sample_rate 1.0)", 1.0))
COUNTERS = ("sampled", "judged", "unjudged", "dropped", "capped", "paused", "failed")
LUA = """
local counter = 0
local tag = "0"
function init(args)
  tag = args[1] or "0"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  local prompt = string.format("Question %s-%d: how many items are in a list of %d items?", tag, counter, counter)
  return wrk.format(nil, "/v1/chat/completions", nil,
    '{"model":"auto","messages":[{"role":"user","content":"' .. prompt .. '"}]}')
end
"""


def learning_config(base: str, sample_rate: float, redis_url: str) -> str:
    return base + f"""
[redis]
url = "{redis_url}"
[learning]
sample_rate = {sample_rate}
budget_usd_per_day = 1000000.0
queue_max = 100000
"""


def drive(url: str, lua: Path, conns: int, seconds: float, tag: str, cap: int | None = None) -> Run:
    """One wrk cell; `cap` (smoke): wrk stops after that many answers (`lua` then includes WRK_CAP_LUA)."""
    out = run_wrk([WRK, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua),
                   url, "--", tag], 1, cap, timeout=seconds + 60)
    requests, errors, p50, p99 = parse_wrk(out)
    rps = requests / seconds if cap is None else reported_rps(out)
    return Run(requests, errors, p50, p99, rps, None)


def counters(url: str) -> dict[str, int]:
    """The learning worker's counters from /metrics (all 0 where learning is off)."""
    text = http_get(url + "/metrics")[1]
    found = {}
    for name in COUNTERS:
        m = re.search(rf"^smr_learning_{name}(?:_total)? (\d+(?:\.\d+)?)$", text, re.M)
        found[name] = int(float(m.group(1))) if m else 0
    return found


def settle(url: str, timeout_s: float = 120.0) -> dict[str, int]:
    """The counters once the worker has dealt with every sampled request (or the timeout passed)."""
    deadline = time.time() + timeout_s
    while True:
        c = counters(url)
        done = sum(c[k] for k in COUNTERS if k != "sampled")
        if done >= c["sampled"] or time.time() > deadline:
            return c
        time.sleep(0.5)


def run(seconds: float, repeats: int, concurrencies: list[int], redis_url: str | None,
        cap: int | None = None) -> list[str]:
    """The tables; `cap` (smoke): each wrk cell stops after that many answers instead of running `seconds`."""
    if shutil.which(WRK) is None:
        raise SystemExit(f"{WRK} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="smr-learning-bench-"))
    lua = tmp / "learning.lua"
    lua.write_text(LUA + (WRK_CAP_LUA if cap is not None else ""))
    db = ScratchDatabase()
    procs: list[Proc] = []
    redis_server = None
    results: dict[tuple[str, int], list[Run]] = {}
    learned: dict[str, dict[str, int]] = {}
    z = Zygote() if cap is not None else None  # smoke: the servers are forked from one that has imported them
    try:
        if redis_url is None:
            from gateway.cache.embedded import EmbeddedRedis
            redis_server = EmbeddedRedis(tmp / "redis")
            redis_url = redis_server.start()
        upstream, upstream_url = fake_openai("learning-bench-upstream", zygote=z)
        procs.append(upstream)
        def gateway(i: int, rate: float, redis: str) -> Proc:
            folder = tmp / f"gw{i}"
            folder.mkdir()
            cfg = folder / "config.toml"
            cfg.write_text(learning_config(gateway_config(upstream_url, db.url, folder / "spill"), rate, redis))
            return serve_gateway(f"learning-bench-gw{i}", cfg, folder, zygote=z)

        started = start_together([partial(gateway, i, rate, redis_url) for i, (_, rate) in enumerate(SIDES)])
        procs += started
        gateways = {name: gw.url for (name, _), gw in zip(SIDES, started, strict=True)}
        for name, url in gateways.items():  # warm: first passes, connection pools
            drive(url, lua, 1, 1, f"warm{len(name)}", cap)
        for r in range(repeats):
            for conns in concurrencies:
                for name, url in gateways.items():
                    results.setdefault((name, conns), []).append(
                        drive(url, lua, conns, seconds, f"{r}c{conns}", cap))
        learned = {name: settle(url) for name, url in gateways.items()}
    finally:
        for p in reversed(procs):
            p.stop()
        if z is not None:
            z.close()
        if redis_server is not None:
            redis_server.stop()
        db.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return table(results, learned)


def table(results: dict[tuple[str, int], list[Run]], learned: dict[str, dict[str, int]]) -> list[str]:
    rows = ["| gateway | conns | requests | req/s | p50 ms | p99 ms | p50 on/off | p99 on/off | errors |",
            "|---|---|---|---|---|---|---|---|---|"]

    def med(key: tuple[str, int], field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[key])

    off, on = (name for name, _ in SIDES)
    for conns in sorted({k[1] for k in results}):
        for name in (off, on):
            k = (name, conns)
            ratio = (f"{med(k, 'p50_ms') / med((off, conns), 'p50_ms'):.2f}",
                     f"{med(k, 'p99_ms') / med((off, conns), 'p99_ms'):.2f}") if name == on else ("–", "–")
            rows.append(f"| {name} | {conns} | {sum(r.requests for r in results[k])} | {med(k, 'rps'):,.0f} "
                        f"| {med(k, 'p50_ms'):.2f} | {med(k, 'p99_ms'):.2f} | {ratio[0]} | {ratio[1]} "
                        f"| {sum(r.errors for r in results[k])} |")
    rows += ["", "| gateway | " + " | ".join(COUNTERS) + " |", "|---|" + "---|" * len(COUNTERS)]
    for name, c in learned.items():
        rows.append(f"| {name} | " + " | ".join(str(c[k]) for k in COUNTERS) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.learning_latency")
    ap.add_argument("--seconds", type=float, default=10.0, help="wrk's duration per cell")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL"), help="Redis URL (default: REDIS_URL, else an "
                                                                         "embedded redis-stack-server)")
    ap.add_argument("--smoke", action="store_true", help="20 answers per cell (wrk's 1 s at most), once, servers forked from "
                    "one zygote: the test's mode")
    args = ap.parse_args(argv)
    seconds, repeats = (1.0, 1) if args.smoke else (args.seconds, args.repeats)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = run(seconds, repeats, [1, 8], args.redis, cap=20 if args.smoke else None)  # smoke: 20 answers a cell
    head = [f"## Learning's latency (`python -m bench.learning_latency{' --smoke' if args.smoke else ''}`, "
            f"{started}, {machine()}; {seconds:g} s per cell, median of {repeats})", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(head + rows) + "\n")
    print("\n".join(head + rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
