"""The default configuration's cache miss against the passthrough, side by side, driven by wrk.

    python -m bench.hotpath [--seconds 10] [--repeats 3] [--smoke] [--baseline DIR] [--ladder]

Started in one run on loopback: a fake OpenAI-compatible upstream with no think time; the direct call
to it (latency reference); the 60-line passthrough (`bench/passthrough.py`); the gateway with the
default configuration (auth on with a key that has a rate limit and a budget, the default classifier
pipeline, exact and semantic cache on, the request log on, the embedded redis-stack-server); and the
same gateway with `cache.semantic = false`; and the floor (`bench/floor.py`): the passthrough plus the I/O a
default-configuration miss cannot do without, through the gateway's own Redis and log clients (admission,
reservation and settlement scripts, the exact GET and SET, the static embedding, the KNN and the index's
insert, a log row), so that the gateway's distance to it is its own logic's cost (`--ladder` adds floors
doing part of that I/O, one part more each). Each is driven by `/usr/bin/wrk` with `bench/hotpath_wrk.lua`,
which gives every request a new prompt (so every request is a cache miss that is then stored), JSON
and SSE, at 1 and 16 connections, the targets alternated and repeated (medians). `--baseline DIR` adds
another checkout's gateway (`git worktree add DIR COMMIT`) with the default configuration, started from
that folder, so a change is measured against its parent in one run, under the same load.

CPU per request is the CPU time of the target's whole process tree (psutil: the server and its
children, such as the embedded Redis and PostgreSQL) over the requests wrk completed; p50/p99 come
from wrk's latency distribution; "added p50" is the target's p50 minus the direct call's. The table
is printed and written to bench/results/hotpath.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil

from bench.procs import (
    ROOT,
    WRK_CAP_LUA,
    Proc,
    Zygote,
    fake_openai,
    free_port,
    gateway_config,
    http_get,
    machine,
    python,
    run_wrk,
    serve_gateway,
    start_together,
)
from tests.scratch import ScratchDatabase

WRK = "/usr/bin/wrk"
LUA = ROOT / "bench" / "hotpath_wrk.lua"
ADMIN = "hotpath-admin-key"
RESULTS = ROOT / "bench" / "results" / "hotpath.md"
DEFAULT = "gateway, default config"
# `--ladder`: floors doing part of a miss's I/O, each step adding a part (bench/floor.py); the whole floor always runs
LADDER = ("", "log", "log,limits", "log,limits,exact")
PARTS = ("limits", "exact", "semantic", "log")  # bench.floor's (not imported: it loads the gateway's clients)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


class Run(msgspec.Struct, frozen=True):
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float
    cpu_us: float | None  # per request, the process tree's; None for the direct call


class Target(msgspec.Struct):
    name: str
    url: str
    key: str = ""
    pid: int | None = None


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its living descendants."""
    total = 0.0
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(out: str) -> tuple[int, int, float, float]:
    """(requests, errors, p50 ms, p99 ms) from `wrk --latency` output."""
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(n) for n in sock.groups()) if sock else 0
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    return requests, errors, _ms(pct["50"]), _ms(pct["99"])


def reported_rps(out: str) -> float:
    """wrk's own requests per second (over the time it ran: a capped cell's is less than its -d)."""
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def drive(target: Target, stream: bool, conns: int, seconds: float, tag: str, cap: int | None = None,
          lua: Path = LUA) -> Run:
    """One wrk cell; `cap` (smoke): wrk stops after that many answers (`lua` then includes WRK_CAP_LUA)."""
    cpu0 = tree_cpu_s(target.pid) if target.pid else 0.0
    out = run_wrk([WRK, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua),
                   target.url, "--", target.key, "1" if stream else "0", tag], 1, cap, timeout=seconds + 60)
    cpu = tree_cpu_s(target.pid) - cpu0 if target.pid else None
    requests, errors, p50, p99 = parse_wrk(out)
    rps = requests / seconds if cap is None else reported_rps(out)
    return Run(requests, errors, p50, p99, rps,
               cpu * 1e6 / requests if cpu is not None and requests else None)


def check(target: Target) -> None:
    """One request as wrk sends them; a target that does not answer 200 stops the run (not a table of errors)."""
    headers = {"Authorization": f"Bearer {target.key}"} if target.key else {}
    r = httpx.post(target.url + "/v1/chat/completions", headers=headers, timeout=30, json={
        "model": "auto", "messages": [{"role": "user", "content": "Question check: how do I reverse a list?"}]})
    if r.status_code != 200:
        raise RuntimeError(f"{target.name} answered {r.status_code}: {r.text[:300]}")


def make_key(url: str) -> str:
    """A key with a rate limit and a budget (both far above what the run uses), as production keys have."""
    r = httpx.post(url + "/v1/keys", json={"name": "hotpath", "tenant": "hotpath", "rate_limit_rpm": 100_000_000,
                                           "budget_usd": 1_000_000.0, "budget_period": "month"},
                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    r.raise_for_status()
    return str(r.json()["key"])


def default_config(upstream: str, db_url: str, spill: Path, semantic: bool) -> str:
    """bench.procs' gateway config made the default one: auth, the default pipeline, exact + semantic cache."""
    cfg = gateway_config(upstream, db_url, spill, log_requests=True, cache=True, classifiers='"tiered", "heuristic"',
                         admin_key=ADMIN)
    return cfg.replace("[cache]\n", f"[cache]\nsemantic = {str(semantic).lower()}\n")


def libssl_env() -> dict[str, str]:
    """The repository's own fetched libssl1.1 (from an earlier `smr serve`), so the run fetches nothing."""
    lib = ROOT / ".smr" / "libssl11" / "usr" / "lib" / "x86_64-linux-gnu"
    return {"SMR_LIBSSL11_DIR": str(lib)} if (lib / "libssl.so.1.1").exists() else {}


class Stack:
    """The processes of one run; `targets()` yields them ready, everything stops at the end."""

    def __init__(self, zygote: Zygote | None = None, baseline: Path | None = None, ladder: bool = False) -> None:
        self.procs: list[Proc] = []
        self.ladder = ladder  # floors doing part of the miss's I/O too (LADDER)
        self.zygote = zygote  # smoke: the servers are forked from one that has imported them
        self.baseline = baseline  # another checkout, whose gateway runs the default config beside this one's

    def targets(self, tmp: Path, db_url: str) -> Iterator[Target]:
        upstream, upstream_url = fake_openai("hotpath-upstream", zygote=self.zygote)
        self.procs.append(upstream)
        yield Target("direct (fake upstream)", upstream_url)
        port = free_port()

        def gateway(semantic: bool, checkout: Path | None = None) -> Proc:
            folder = tmp / ("baseline" if checkout else "semantic" if semantic else "exact")
            folder.mkdir()
            cfg = folder / "config.toml"
            cfg.write_text(default_config(upstream_url, db_url, folder / "spill", semantic))
            if checkout is not None:  # its own interpreter (its venv, else this one), its own code
                own = checkout / ".venv" / "bin" / "python"
                return serve_gateway(f"hotpath-{folder.name}", cfg, folder,
                                     cmd=[str(own) if own.exists() else python(), "-m", "gateway.cli"],
                                     env=libssl_env(), cwd=checkout)
            return serve_gateway(f"hotpath-{folder.name}", cfg, folder, env=libssl_env(), zygote=self.zygote)

        # Started side by side (each start-up waits on its own imports and health poll), measured in turn.
        lib = libssl_env().get("SMR_LIBSSL11_DIR")
        floors = [*(LADDER if self.ladder else ()), ",".join(PARTS)]

        def floor(parts: str) -> Callable[[], Proc]:
            at = free_port()
            return lambda: Proc(f"hotpath-floor-{parts.replace(',', '-') or 'none'}", [
                python(), "-m", "bench.floor", "--upstream", upstream_url, "--port", str(at), "--database", db_url,
                "--data-dir", str(tmp / f"floor-{at}"), "--parts", parts, *(["--libssl11-dir", lib] if lib else [])],
                f"http://127.0.0.1:{at}/health", zygote=self.zygote)

        started = start_together([
            lambda: Proc("hotpath-passthrough", [python(), "-m", "bench.passthrough", "--upstream", upstream_url,
                                                 "--port", str(port)], f"http://127.0.0.1:{port}/health",
                                 zygote=self.zygote),
            *[floor(parts) for parts in floors],
            lambda: gateway(True), lambda: gateway(False),
            *([lambda: gateway(True, self.baseline)] if self.baseline is not None else [])])
        self.procs += started
        passthrough, floor_procs, gateways = started[0], started[1:1 + len(floors)], started[1 + len(floors):]
        yield Target("passthrough (bench/passthrough.py)", passthrough.url, pid=passthrough.pid)
        for parts, proc in zip(floors, floor_procs, strict=True):
            yield Target(floor_name(parts), proc.url, pid=proc.pid)
        names = [DEFAULT, "gateway, cache.semantic = false"]
        if self.baseline is not None:
            names.append(f"baseline {baseline_name(self.baseline)}, default config")
        for name, gw in zip(names, gateways, strict=True):
            yield Target(name, gw.url, make_key(gw.url), gw.pid)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def floor_name(parts: str) -> str:
    """The floor's row: all parts, or those it does."""
    if parts == ",".join(PARTS):
        return "floor: passthrough + the miss's I/O (bench/floor.py)"
    return f"floor: passthrough + {parts.replace(',', ' + ') or 'nothing'}"


def baseline_name(checkout: Path) -> str:
    """The checkout's commit (short), else its folder's name."""
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else checkout.name


def run(seconds: float, repeats: int, concurrencies: list[int], idle_s: float = 2.0,
        cap: int | None = None, baseline: Path | None = None, ladder: bool = False) -> list[str]:
    """The table; `cap` (smoke): each wrk cell stops after that many answers instead of running `seconds`;
    `baseline`: another checkout whose gateway (default config) is measured in the same run."""
    if shutil.which(WRK) is None:
        raise SystemExit(f"{WRK} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="smr-hotpath-"))
    lua = LUA
    if cap is not None:
        lua = tmp / LUA.name
        lua.write_text(LUA.read_text() + WRK_CAP_LUA)
    db = ScratchDatabase()
    forks = Zygote() if cap is not None else None  # smoke: the servers are forked from one that has imported them
    stack = Stack(forks, baseline, ladder)
    results: dict[tuple[str, bool, int], list[Run]] = {}
    health: dict[str, object] = {}
    floors: dict[str, dict[str, Any]] = {}
    idle: dict[str, float] = {}
    try:
        targets = list(stack.targets(tmp, db.url))
        for t in targets:  # warm: the model's first passes, connection pools, the index's first entries
            check(t)
            drive(t, False, 1, 1, "warm", cap, lua)
        idle = {t.name: idle_ms_per_s(t.pid, idle_s) for t in targets if t.pid}
        for r in range(repeats):
            for stream in (False, True):
                for conns in concurrencies:
                    for t in targets:
                        results.setdefault((t.name, stream, conns), []).append(
                            drive(t, stream, conns, seconds, f"{r}{int(stream)}{conns}", cap, lua))
        health = json.loads(http_get(next(t for t in targets if t.name == DEFAULT).url + "/health")[1])
        floors = {t.name: json.loads(http_get(t.url + "/health")[1]) for t in targets if t.name.startswith("floor")}
    finally:
        stack.stop()
        if forks is not None:
            forks.close()
        db.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return table(results, health, idle, idle_s) + floor_lines(floors)


def floor_lines(floors: dict[str, dict[str, Any]]) -> list[str]:
    """What each floor did, from its /health: a floor whose writes failed would have looked cheap."""
    out = []
    for name, h in floors.items():
        log = h.get("log") or {}
        out.append(f"{name}: {h.get('requests')} requests, {h.get('writes')} writes after the answers, "
                   f"{h.get('failed')} failed; log rows written {log.get('written', '–')}, spilled "
                   f"{log.get('spilled', '–')}, dropped {log.get('dropped', '–')}.")
    return ["", *out] if out else []


def idle_ms_per_s(pid: int, seconds: float = 2.0) -> float:
    """CPU the process tree spends with no request (timers, the log writer, Redis's cron), ms per second:
    part of every CPU-per-request figure, the larger the fewer requests a second."""
    cpu0 = tree_cpu_s(pid)
    time.sleep(seconds)
    return (tree_cpu_s(pid) - cpu0) * 1e3 / seconds


def table(results: dict[tuple[str, bool, int], list[Run]], health: dict[str, object],
          idle: dict[str, float], idle_s: float = 2.0) -> list[str]:
    rows = ["| target | body | conns | req/s | p50 ms | p99 ms | added p50 ms | CPU us / request | CPU vs passthrough "
            "| errors |", "|---|---|---|---|---|---|---|---|---|---|"]

    def med(key: tuple[str, bool, int], field: str) -> float:
        values = [getattr(r, field) for r in results[key] if getattr(r, field) is not None]
        return statistics.median(values) if values else float("nan")

    names = list(dict.fromkeys(k[0] for k in results))
    for stream in (False, True):
        for conns in sorted({k[2] for k in results}):
            direct = med((names[0], stream, conns), "p50_ms")
            passthrough = med((names[1], stream, conns), "cpu_us")
            for name in names:
                k = (name, stream, conns)
                cpu, p50 = med(k, "cpu_us"), med(k, "p50_ms")
                has_cpu = cpu == cpu  # not NaN
                added = "–" if name == names[0] else f"{p50 - direct:+.2f}"
                cpu_text = f"{cpu:,.0f}" if has_cpu else "–"
                ratio = f"{cpu / passthrough:.1f}x" if has_cpu and passthrough > 0 else "–"  # smoke: 0 ticks
                rows.append(
                    f"| {name} | {'SSE' if stream else 'JSON'} | {conns} | {med(k, 'rps'):,.0f} | {p50:.2f} "
                    f"| {med(k, 'p99_ms'):.2f} | {added} | {cpu_text} | {ratio} | {sum(r.errors for r in results[k])} |")
    cache = health.get("cache") if isinstance(health.get("cache"), dict) else {}
    assert isinstance(cache, dict)
    rows += ["", f"Default gateway's cache after the run: {cache.get('misses')} misses, {cache.get('hits_exact')} "
                 f"exact and {cache.get('hits_semantic')} semantic hits, {cache.get('guard_rejections')} guard "
                 f"rejections; store {cache.get('store')}, embedding {cache.get('embedding_backend')} "
                 f"on {cache.get('device')}.",
             "", f"Idle CPU (no requests, {idle_s:g} s), ms per second: "
             + "; ".join(f"{name} {ms:.1f}" for name, ms in idle.items()) + "."]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath")
    ap.add_argument("--seconds", type=float, default=10.0, help="wrk's duration per cell")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="20 answers per cell (wrk's 1 s at most), once, servers forked from "
                    "one zygote: the test's mode")
    ap.add_argument("--baseline", type=Path, help="another checkout (git worktree add DIR COMMIT, with a venv or not): "
                    "its gateway runs the default config beside this one's, measured in the same run")
    ap.add_argument("--ladder", action="store_true", help="floors doing part of the miss's I/O too (log, limits, exact "
                    "cache, one step each): what each part costs under the same load")
    args = ap.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "gateway" / "cli").is_dir():
        raise SystemExit(f"{args.baseline}: not a checkout of this project (no gateway/cli)")
    seconds, repeats = (1.0, 1) if args.smoke else (args.seconds, args.repeats)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # smoke: the idle row's code, not its figure; each cell 20 answers, not a second of them
    rows = run(seconds, repeats, [1, 16], idle_s=0.5 if args.smoke else 2.0, cap=20 if args.smoke else None,
               baseline=args.baseline, ladder=args.ladder)
    head = [f"## Cache-miss hot path (`python -m bench.hotpath{' --smoke' if args.smoke else ''}`, {started}, "
            f"{machine()}; {seconds:g} s per cell, median of {repeats})", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(head + rows) + "\n")
    print("\n".join(head + rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
