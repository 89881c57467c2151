"""The benchmark suite: `bench/run` (full) or `bench/run --smoke` (seconds, tiny load).

Scenarios are interleaved and repeated; each figure is a median, and comparisons are ratios taken
in the same run. Prints a markdown table and writes it to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import cache_bench, classifiers, log_writer
from bench.procs import ROOT, Proc, cpu_seconds, free_port, python, rss_mib
from gateway.db.scratch import ScratchDatabase

CONFIG = """
[server]
host = "127.0.0.1"
[auth]
enabled = false
[cache]
enabled = false
[log]
requests = {log_requests}
spill_dir = "{spill}"
[database]
url = "{db_url}"
[routing]
classifiers = ["heuristic"]
baseline = "upstream"
[tiers]
simple = ["upstream"]
medium = ["upstream"]
complex = ["upstream"]
[[backends]]
name = "upstream"
provider = "openai"
model = "bench-model"
base_url = "{upstream}/v1"
api_key = "bench"
input_price = 1.0
output_price = 2.0
"""
PROMPT = "Explain the difference between a list and a tuple in Python."


def body(model: str, stream: bool) -> str:
    b: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    if stream:
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b)


def load(url: str, model: str, stream: bool, concurrency: int, requests: int) -> dict[str, float]:
    out = subprocess.run(
        [python(), "-m", "bench.load", "--url", url, "--body", body(model, stream), "--concurrency", str(concurrency),
         "--requests", str(requests)] + (["--stream"] if stream else []),
        cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import os
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def overhead(smoke: bool) -> list[str]:
    concurrencies = [1, 4] if smoke else [1, 16, 64]
    repeats = 1 if smoke else 3
    per_run = 30 if smoke else 400
    upstream_port = free_port()
    upstream = Proc("fake-upstream", [python(), "-m", "gateway.fakes", "--kind", "openai", "--port",
                                      str(upstream_port)], f"http://127.0.0.1:{upstream_port}/v1/models")
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    db = ScratchDatabase()
    tmp = Path(tempfile.mkdtemp())

    def start_gateway(name: str, log_requests: bool) -> Proc:
        cfg = tmp / f"{name}.toml"
        cfg.write_text(CONFIG.format(upstream=upstream_url, log_requests=str(log_requests).lower(),
                                     spill=tmp / f"spill-{name}", db_url=db.url))
        port = free_port()
        return Proc(name, [python(), "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port)],
                    f"http://127.0.0.1:{port}/health", env={"SMR_LOG_LEVEL": "WARNING"})

    gateway = start_gateway("gateway", log_requests=True)
    quiet = start_gateway("gateway-nolog", log_requests=False)
    gw_url = f"http://127.0.0.1:{gateway.port}/v1/chat/completions"
    idle_rss = rss_mib(gateway.pid)
    scenarios = {
        "direct": (f"{upstream_url}/v1/chat/completions", "bench-model", None),
        "gateway, forced tier": (gw_url, "smr/simple", gateway),
        "gateway, auto (heuristic)": (gw_url, "auto", gateway),
        "gateway, forced tier, request log off": (f"http://127.0.0.1:{quiet.port}/v1/chat/completions",
                                                  "smr/simple", quiet),
    }
    results: dict[tuple[str, bool, int], list[dict[str, float]]] = {}
    peak_rss = idle_rss
    try:
        for url, model, _ in scenarios.values():  # warm-up
            load(url, model, False, 2, 20)
        for _ in range(repeats):
            for stream in (False, True):
                for c in concurrencies:
                    for name, (url, model, proc) in scenarios.items():
                        cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                        r = load(url, model, stream, c, per_run * (2 if c > 1 else 1))
                        if proc:
                            r["gw_cpu_ms"] = (cpu_seconds(proc.pid) - cpu0) * 1000 / max(r["requests"], 1)
                        results.setdefault((name, stream, c), []).append(r)
                        peak_rss = max(peak_rss, rss_mib(gateway.pid))
    finally:
        gateway.stop()
        quiet.stop()
        upstream.stop()
        db.drop()

    def med(key: tuple[str, bool, int], field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    rows = ["| scenario | body | conc. | req/s | p50 ms | p99 ms | added p50 ms | gateway CPU ms/req | errors |",
            "|---|---|---|---|---|---|---|---|---|"]
    for stream in (False, True):
        for c in concurrencies:
            base = med(("direct", stream, c), "p50_ms")
            for name in scenarios:
                k = (name, stream, c)
                added = "–" if name == "direct" else f"{med(k, 'p50_ms') - base:+.2f}"
                cpu = "–" if name == "direct" else f"{med(k, 'gw_cpu_ms'):.2f}"
                errors = sum(int(r["errors"]) for r in results[k])
                rows.append(f"| {name} | {'SSE' if stream else 'JSON'} | {c} | {med(k, 'rps'):,.0f} | "
                            f"{med(k, 'p50_ms'):.2f} | {med(k, 'p99_ms'):.2f} | {added} | {cpu} | {errors} |")
    rows.append("")
    rows.append(f"Gateway start-up to first answered request: {gateway.startup_s:.2f} s; "
                f"RSS idle {idle_rss:.0f} MiB, peak under load {peak_rss:.0f} MiB.")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench/run")
    ap.add_argument("--smoke", action="store_true", help="a few seconds of tiny load, to keep the code honest")
    args = ap.parse_args()
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## Gateway overhead ({'smoke' if args.smoke else 'full'} run, {started}, {machine()})", ""]
    lines += overhead(args.smoke)
    lines += ["", "## Accounting: request-log writer", "", *log_writer.run(args.smoke)]
    lines += ["", "## Cache through HTTP (one client at a time)", "", *cache_bench.run(args.smoke)]
    lines += ["", "## Classifiers (in process, a 200-token prompt)", "", *classifiers.run(args.smoke)]
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results" / ("smoke.md" if args.smoke else "latest.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
