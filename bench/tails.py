"""Tails, event-loop stalls, workers and cost growth under wrk (issue 27): `python -m bench.tails [--smoke]`.

Four tables, each from one run on this machine, every gateway in front of one fake OpenAI upstream:
1. Tails at 16 connections: p50/p99 of the passthrough and of the gateway's forced route (auth and cache
   off, request log on), JSON and SSE, with the gateway's event-loop lag over the run (the histogram's
   delta in `/metrics`) and its full GC passes; the same with `server.tune_gc = false`, and with the
   request log off, to tell the stalls apart.
2. CPU per request of the forced route against the passthrough's (ratios).
3. Workers: requests per second with `--workers 2` against 1.
4. Growth (2 connections): CPU per request against conversation length and prompt size, classifier
   (tiered) and cache on:
   with the exact cache only, every request a miss (wrk varies the last message) and the same body again
   (a hit); and with the semantic cache on (its two-stage lookup: the static embedding and the index's search;
   wrk's prompts differ from their near neighbours by a number, which the guard's rules reject before MiniLM).
Writes the tables to bench/results/tails.md (smoke: tails-smoke.md) and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.libssl import share_libssl11
from bench.procs import (
    ROOT,
    WRK_CAP_LUA,
    Proc,
    Zygote,
    cpu_seconds,
    fake_openai,
    free_port,
    gateway_config,
    http_get,
    python,
    run_wrk,
    start_together,
    stop_together,
    zygote,
)
from tests.scratch import ScratchDatabase

WRK = shutil.which("wrk") or "/usr/bin/wrk"
MARK = "@@N@@"  # replaced by a per-request counter when every request must differ
LUA = """
local f = io.open("{path}", "rb"); local body = f:read("*a"); f:close()
local cut = string.find(body, "{mark}", 1, true)
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
local n = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
if cut == nil then
  wrk.body = body
else
  local head, tail = string.sub(body, 1, cut - 1), string.sub(body, cut + {marklen})
  function request()
    n = n + 1
    return wrk.format(nil, nil, nil, head .. tostring(tid) .. "-" .. n .. tail)
  end
end
""" + WRK_CAP_LUA


class Run:
    def __init__(self, rps: float, p50: float, p99: float, requests: int, errors: int) -> None:
        self.rps, self.p50, self.p99, self.requests, self.errors = rps, p50, p99, requests, errors
        self.cpu_ms = float("nan")
        self.lag: dict[str, float] = {}


def median(runs: list[Run]) -> Run:
    """The median of each figure over repeated runs (errors: the sum; lag counts: the median, the longest
    lag and GC pass: the largest seen)."""
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    r = Run(mid([x.rps for x in runs]), mid([x.p50 for x in runs]), mid([x.p99 for x in runs]),
            sum(x.requests for x in runs), sum(x.errors for x in runs))
    r.cpu_ms = mid([x.cpu_ms for x in runs])
    if runs[0].lag:
        r.lag = {k: (max if k.endswith("worst_ms") else mid)([x.lag[k] for x in runs]) for k in runs[0].lag}
    return r


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m[2]]


def wrk(url: str, body: str, connections: int, seconds: float, tmp: Path, requests: int | None = None) -> Run:
    """One wrk run; `requests` (smoke): each thread stops after that many answers (bench.procs.run_wrk)."""
    fd, name = tempfile.mkstemp(prefix="body-", suffix=".json", dir=tmp)  # its own file: sections may run at once
    os.close(fd)
    path = Path(name)
    path.write_text(body)
    script = tmp / f"{path.stem}.lua"
    script.write_text(LUA.format(path=path, mark=MARK, marklen=len(MARK)))
    threads = min(2, connections)
    out = run_wrk([WRK, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                   "--latency", "--timeout", "10s", "-s", str(script), url], threads, requests)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(pct) != 2:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad[1]) if bad else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(g) for g in sock.groups()) if sock else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return Run(rps, _ms(pct["50"]), _ms(pct["99"]), requests, errors)


def process_cpu(pid: int) -> float:
    """CPU seconds of a gateway: its process and its workers (not an embedded Redis it started)."""
    total = cpu_seconds(pid)
    for child in psutil.Process(pid).children(recursive=True):
        if child.name().startswith("python"):
            total += cpu_seconds(child.pid)
    return total


def histogram(text: str, name: str, **match: str) -> dict[float, int]:
    """A histogram's cumulative buckets from exposition text, summed over every series matching `match`."""
    out: dict[float, int] = {}
    for m in re.finditer(rf"^{name}_bucket{{([^}}]*)}} (\d+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        if all(labels.get(k) == v for k, v in match.items()):
            le = float(labels["le"])
            out[le] = out.get(le, 0) + int(m[2])
    return out


def stalls(before: str, after: str) -> dict[str, float]:
    """Over one run: lag timers fired, how many ran 10 ms or more late, the bound of the longest lag's
    bucket (ms), and the full (generation 2) GC passes and the bound of the longest one's bucket (ms)."""
    lag0, lag1 = histogram(before, "smr_event_loop_lag_seconds"), histogram(after, "smr_event_loop_lag_seconds")
    gc0 = histogram(before, "smr_gc_pause_seconds", generation="2")
    gc1 = histogram(after, "smr_gc_pause_seconds", generation="2")

    def worst(h0: dict[float, int], h1: dict[float, int]) -> float:
        previous = 0
        bound = 0.0
        for le in sorted(h1):
            d = h1[le] - h0.get(le, 0)
            if d > previous:
                bound = le
            previous = d
        return bound * 1000

    inf = float("inf")
    below_10ms = lag1.get(0.01, 0) - lag0.get(0.01, 0)
    fired = lag1.get(inf, 0) - lag0.get(inf, 0)
    return {"fired": fired, "late10": fired - below_10ms, "worst_ms": worst(lag0, lag1),
            "gc2": gc1.get(inf, 0) - gc0.get(inf, 0), "gc2_worst_ms": worst(gc0, gc1)}


class Bench:
    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.seconds = 1.0 if smoke else 10.0
        self.conns = 2 if smoke else 16
        self.repeats = 1 if smoke else 3
        self.cap = 10 if smoke else None  # smoke: each wrk thread stops after 10 answers (no figure is read)
        self.tmp = Path(tempfile.mkdtemp(prefix="smr-tails-"))
        self.procs: list[Proc] = []
        self.zygote: Zygote | None = None  # smoke: the servers are forked from one that has imported them

    @contextmanager
    def stack(self) -> Iterator[tuple[str, str]]:
        db = ScratchDatabase()
        try:
            with zygote(self.smoke) as self.zygote:
                try:
                    upstream, url = fake_openai("tails-upstream", zygote=self.zygote)
                    self.procs.append(upstream)
                    yield url, db.url
                finally:
                    stop_together(self.procs[::-1])
        finally:
            db.drop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def gateway(self, name: str, config: str, *extra: str) -> Proc:
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(config)
        port = free_port()
        p = Proc(name, [python(), "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port), *extra],
                 f"http://127.0.0.1:{port}/health", env={"SMR_LOG_LEVEL": "WARNING"}, zygote=self.zygote)
        self.procs.append(p)
        return p

    def passthrough(self, upstream: str) -> Proc:
        port = free_port()
        p = Proc("tails-passthrough", [python(), "-m", "bench.passthrough", "--upstream", upstream, "--port", str(port)],
                 f"http://127.0.0.1:{port}/health", zygote=self.zygote)
        self.procs.append(p)
        return p

    def measure(self, proc: Proc, body: str, metrics: bool = True, conns: int | None = None, workers: int = 1) -> Run:
        base = f"http://127.0.0.1:{proc.port}"
        before = http_get(base + "/metrics")[1] if metrics else ""
        cpu0 = process_cpu(proc.pid)
        r = wrk(base + "/v1/chat/completions", body, conns or self.conns, self.seconds, self.tmp, self.cap)
        r.cpu_ms = (process_cpu(proc.pid) - cpu0) * 1000 / max(r.requests, 1)
        if metrics:
            if workers > 1:
                time.sleep(1.2)  # under --workers, the others' snapshots are up to a second old
            r.lag = stalls(before, http_get(base + "/metrics")[1])
        return r


def body(model: str, stream: bool, messages: int = 1, size: int = 60, unique: bool = False) -> str:
    """A chat body: `messages` turns (user and assistant in turn, a user turn last) whose text adds up to
    about `size` characters; with `unique`, the last turn carries a per-request counter (every one a miss)."""
    per = max(size // messages, 8)
    words = ("Explain the difference between a list and a tuple in Python, with an example of each. " * (per // 80 + 1))
    turns = [{"role": "user" if (messages - 1 - i) % 2 == 0 else "assistant", "content": words[:per]}
             for i in range(messages)]
    if unique:
        turns[-1]["content"] = MARK + " " + turns[-1]["content"]
    b: dict[str, object] = {"model": model, "messages": turns, "stream": stream}
    if stream:
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b)


def tails(bench: Bench, upstream: str, db_url: str) -> list[str]:
    forced = gateway_config(upstream, db_url, bench.tmp / "spill-forced", log_requests=True, cache=False)
    pt, gw, plain, quiet = start_together([
        lambda: bench.passthrough(upstream),
        lambda: bench.gateway("tails-gateway", forced),
        lambda: bench.gateway("tails-gateway-gc-untuned", forced.replace("[server]\n", "[server]\ntune_gc = false\n")),
        lambda: bench.gateway("tails-gateway-nolog", gateway_config(upstream, db_url, bench.tmp / "spill-quiet",
                                                                     log_requests=False, cache=False))])
    rows = [f"| scenario ({bench.conns} connections, wrk {bench.seconds:g} s, median of {bench.repeats}) | body | "
            "req/s | p50 ms | p99 ms | p99 / passthrough's | CPU ms/req | CPU / passthrough's | "
            "loop lags ≥ 10 ms (of timers) | longest lag ≤ ms | full GC passes | longest ≤ ms | errors |", "|" + "---|" * 13]
    ratios: dict[tuple[str, bool], tuple[float, float]] = {}
    scenarios = (("passthrough (Litestar + aiohttp)", pt), ("gateway, forced route, log on", gw),
                 ("the same, tune_gc = false", plain), ("the same, request log off", quiet))
    for stream in (False, True):
        b = body("smr/simple", stream)
        for _, p in scenarios if not bench.smoke else ():  # warm-up (for the figures; the smoke checks the code)
            wrk(f"http://127.0.0.1:{p.port}/v1/chat/completions", b, 2, 1, bench.tmp)
        runs: dict[str, list[Run]] = {name: [] for name, _ in scenarios}
        for rep in range(bench.repeats):  # interleaved, each repeat starting at another scenario
            for name, p in scenarios[rep % 4:] + scenarios[:rep % 4]:
                runs[name].append(bench.measure(p, b, metrics=p is not pt))
        ref = median(runs[scenarios[0][0]])
        for name, proc in scenarios:
            r = median(runs[name])
            lag = r.lag
            cells = ([f"{lag['late10']:.0f} (of {lag['fired']:.0f})", f"{lag['worst_ms']:g}", f"{lag['gc2']:.0f}",
                      f"{lag['gc2_worst_ms']:g}"] if lag else ["–"] * 4)
            rows.append(f"| {name} | {'SSE' if stream else 'JSON'} | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | "
                        f"{r.p99 / ref.p99:.2f}x | {r.cpu_ms:.2f} | {r.cpu_ms / ref.cpu_ms:.2f}x | "
                        + " | ".join(cells) + f" | {r.errors} |")
            if proc is gw:
                ratios[("gw", stream)] = (r.p99 / ref.p99, r.cpu_ms / ref.cpu_ms)
    rows += ["", "| target | measured | met |", "|---|---|---|"]
    for stream, label, cpu_limit in ((False, "JSON", 2.0), (True, "SSE", 2.5)):
        p99, cpu = ratios[("gw", stream)]
        rows.append(f"| p99 at {bench.conns} connections ≤ 2x the passthrough's, {label} | {p99:.2f}x | "
                    f"{'yes' if p99 <= 2 else 'no'} |")
        rows.append(f"| forced route CPU per request ≤ {cpu_limit:g}x the passthrough's, {label} | {cpu:.2f}x | "
                    f"{'yes' if cpu <= cpu_limit else 'no'} |")
    return rows


def workers(bench: Bench, upstream: str, db_url: str) -> list[str]:
    rows = [f"| gateway, forced route, JSON, {bench.conns} connections (median of {bench.repeats}) | req/s | p50 ms | "
            "p99 ms | CPU ms/req | req/s vs 1 worker | errors |", "|---|---|---|---|---|---|---|"]
    def start(n: int) -> Proc:
        cfg = gateway_config(upstream, db_url, bench.tmp / f"spill-w{n}", log_requests=True, cache=False)
        return bench.gateway(f"tails-workers-{n}", cfg, "--workers", str(n))

    procs = dict(zip((1, 2), start_together([lambda: start(1), lambda: start(2)]), strict=True))
    for n in (1, 2):  # warm-up
        wrk(f"http://127.0.0.1:{procs[n].port}/v1/chat/completions", body("smr/simple", False), 4, 1, bench.tmp,
            bench.cap)
    runs: dict[int, list[Run]] = {1: [], 2: []}
    for rep in range(bench.repeats):
        for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
            runs[n].append(bench.measure(procs[n], body("smr/simple", False), metrics=False))
    one = median(runs[1]).rps
    for n in (1, 2):
        r = median(runs[n])
        rows.append(f"| --workers {n} | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | {r.cpu_ms:.2f} | "
                    f"{r.rps / one:.2f}x | {r.errors} |")
        procs[n].stop()
        bench.procs.remove(procs[n])
    return rows


def growth(bench: Bench, upstream: str, db_url: str) -> list[str]:
    cfg = gateway_config(upstream, db_url, bench.tmp / "spill-growth", log_requests=True, cache=True,
                         classifiers='"tiered", "heuristic"')
    exact, semantic = start_together([
        lambda: bench.gateway("tails-growth", cfg.replace("[cache]\nenabled = true\n",
                                                          "[cache]\nenabled = true\nsemantic = false\n")),
        lambda: bench.gateway("tails-growth-semantic", cfg)])
    shapes = [(1, 1_000), (10, 1_000), (100, 1_000), (1, 100_000), (10, 100_000), (100, 100_000)]
    if bench.smoke:
        shapes = [(1, 1_000), (100, 100_000)]
    rows = ["| messages | prompt | exact cache, miss: CPU ms/req | p50 ms | exact cache, hit: CPU ms/req | p50 ms | "
            "semantic cache, miss: CPU ms/req | p50 ms | errors |", "|" + "---|" * 9]
    conns = 2  # CPU per request is the measure: no queue
    for p in (exact, semantic):
        wrk(f"http://127.0.0.1:{p.port}/v1/chat/completions", body("auto", False, unique=True), 2, 1, bench.tmp,
            bench.cap)
    for messages, size in shapes:
        miss = bench.measure(exact, body("auto", False, messages, size, unique=True), metrics=False, conns=conns)
        hit = bench.measure(exact, body("auto", False, messages, size), metrics=False, conns=conns)
        sem = bench.measure(semantic, body("auto", False, messages, size, unique=True), metrics=False, conns=conns)
        rows.append(f"| {messages} | {size // 1000} kB | {miss.cpu_ms:.2f} | {miss.p50:.2f} | {hit.cpu_ms:.2f} | "
                    f"{hit.p50:.2f} | {sem.cpu_ms:.2f} | {sem.p50:.2f} | {miss.errors + hit.errors + sem.errors} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tails")
    ap.add_argument("--smoke", action="store_true", help="10 answers per wrk thread (1 s at most) at 2 connections, the sections side by side, servers "
                    "forked from one zygote: keeps the code honest")
    ap.add_argument("--only", choices=("tails", "workers", "growth"), action="append")
    args = ap.parse_args()
    share_libssl11()  # one fetch for every gateway's embedded Redis, not one per data folder
    only = set(args.only or ("tails", "workers", "growth"))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    bench = Bench(args.smoke)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# bench.tails ({'smoke' if args.smoke else 'full'} run, {started}, {psutil.cpu_count()} cores)"]
    sections = {"tails": ("Tails and event-loop stalls", tails), "workers": ("Workers", workers),
                "growth": ("Cost against conversation size (classifier and cache on)", growth)}
    chosen = [name for name in sections if name in only]
    with bench.stack() as (upstream, db_url):
        if bench.smoke:  # no figure is read: the sections run side by side, each with its own gateways
            with ThreadPoolExecutor(len(chosen)) as pool:
                futures = [pool.submit(sections[name][1], bench, upstream, db_url) for name in chosen]
            tables = [f.result() for f in futures]
        else:
            tables = [sections[name][1](bench, upstream, db_url) for name in chosen]
    for name, table in zip(chosen, tables, strict=True):
        lines += ["", f"## {sections[name][0]}", "", *table]
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results" / ("tails-smoke.md" if args.smoke else "tails.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
