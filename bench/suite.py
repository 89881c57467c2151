"""The benchmark suite: `bench/run` (full) or `bench/run --smoke` (seconds, tiny load; the sections side by
side and the servers forked from one zygote, as no figure of it is read).

Scenarios are interleaved and repeated; each figure is a median, and comparisons are ratios taken
in the same run. Prints a markdown table and writes it to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import cache_bench, classifiers, log_writer, server_stack
from bench.libssl import share_libssl11
from bench.procs import (
    ROOT,
    Proc,
    Zygote,
    cpu_seconds,
    fake_openai,
    free_port,
    gateway_config,
    machine,
    python,
    rss_mib,
    serve_gateway,
    start_together,
    stop_together,
    zygote,
)
from tests.scratch import ScratchDatabase

PROMPT = "Explain the difference between a list and a tuple in Python."


def body(model: str, stream: bool) -> str:
    b: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    if stream:
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b)


def load(url: str, model: str, stream: bool, concurrency: int, requests: int,
         smoke: bool = False) -> dict[str, float]:
    """`bench.load` against `url`: in its own process (its CPU apart from ours), or in this one for a smoke run,
    where no figure is read and an interpreter start-up would be most of the time."""
    from bench.load import measured

    argv = ["--url", url, "--body", body(model, stream), "--concurrency", str(concurrency),
            "--requests", str(requests)] + (["--stream"] if stream else [])
    return measured(argv, in_process=smoke)


LITELLM = ROOT / "bench" / ".litellm-venv" / "bin" / "litellm"
LITELLM_CONFIG = """model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: {upstream}/v1
      api_key: bench
"""


class Overhead:
    """Every scenario against one fast fake upstream, interleaved and repeated; medians."""

    def __init__(self, smoke: bool, zygote: Zygote | None = None) -> None:
        self.smoke = smoke
        self.zygote = zygote  # smoke: the servers are forked from one that has imported them
        self.concurrencies = [1, 4] if smoke else [1, 16, 64]
        self.repeats = 1 if smoke else 3
        self.per_run = 10 if smoke else 400  # smoke: every scenario answers real requests; no figure is read
        self.results: dict[tuple[str, bool, int], list[dict[str, float]]] = {}
        self.procs: dict[str, Proc] = {}
        self.rss: dict[str, tuple[float, float]] = {}

    def start(self, tmp: Path, db_url: str) -> dict[str, tuple[str, str, Proc | None]]:
        self.procs["upstream"], upstream = fake_openai("fake-upstream", zygote=self.zygote)
        scenarios: dict[str, tuple[str, str, Proc | None]] = {"direct": (f"{upstream}/v1/chat/completions",
                                                                         "bench-model", None)}
        port = free_port()

        def gateway(name: str, log_requests: bool, classifiers: str) -> Proc:
            cfg = tmp / f"{name}.toml"
            cfg.write_text(gateway_config(upstream, db_url, tmp / f"spill-{name}", log_requests=log_requests,
                                          classifiers=classifiers))
            return serve_gateway(name, cfg, zygote=self.zygote)

        starts = {"passthrough": lambda: Proc("passthrough", [python(), "-m", "bench.passthrough", "--upstream",
                                                              upstream, "--port", str(port)],
                                              f"http://127.0.0.1:{port}/health", zygote=self.zygote),
                  "gateway": lambda: gateway("gateway", True, '"tiered", "heuristic"'),  # config.toml's default pipeline
                  "gateway-embedding": lambda: gateway("gateway-embedding", True, '"embedding", "heuristic"'),
                  "gateway-nolog": lambda: gateway("gateway-nolog", False, '"heuristic"')}
        if self.smoke:  # a smoke run reads no start-up figure: they start together
            self.procs.update(zip(starts, start_together(list(starts.values())), strict=True))
        else:  # one after another, so each start-up figure is its own
            for name, start in starts.items():
                self.procs[name] = start()
        scenarios["passthrough (75-line Litestar + aiohttp)"] = (f"http://127.0.0.1:{port}/v1/chat/completions",
                                                                 "bench-model", self.procs["passthrough"])
        gw = self.procs["gateway"]
        url = f"http://127.0.0.1:{gw.port}/v1/chat/completions"
        scenarios["(b) gateway, forced tier"] = (url, "smr/simple", gw)
        scenarios["(c) gateway, auto, default classifier (tiered)"] = (url, "auto", gw)
        emb = self.procs["gateway-embedding"]
        scenarios["(d) gateway, auto, embedding classifier"] = (
            f"http://127.0.0.1:{emb.port}/v1/chat/completions", "auto", emb)
        quiet = self.procs["gateway-nolog"]
        scenarios["(b) with the request log off"] = (f"http://127.0.0.1:{quiet.port}/v1/chat/completions",
                                                     "smr/simple", quiet)
        if LITELLM.exists():
            cfg = tmp / "litellm.yaml"
            cfg.write_text(LITELLM_CONFIG.format(upstream=upstream))
            p = free_port()
            # No auth on either side: the gateway runs with auth off here too.
            self.procs["litellm"] = Proc("litellm", [str(LITELLM), "--config", str(cfg), "--port", str(p),
                                                     "--num_workers", "1"], f"http://127.0.0.1:{p}/health/liveliness",
                                         env={"LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
                                              "LITELLM_LOG": "ERROR"})
            scenarios["(e) LiteLLM proxy"] = (f"http://127.0.0.1:{p}/v1/chat/completions", "bench-model",
                                              self.procs["litellm"])
        for name, proc in self.procs.items():
            self.rss[name] = (rss_mib(proc.pid), rss_mib(proc.pid))
        return scenarios

    def run(self) -> list[str]:
        db = ScratchDatabase()
        tmp = Path(tempfile.mkdtemp())
        try:
            scenarios = self.start(tmp, db.url)
            for url, model, _ in scenarios.values():  # warm-up
                load(url, model, False, 2, 4 if self.smoke else 20, self.smoke)
            names = list(scenarios)
            for rep in range(self.repeats):
                # Each repeat starts the scenarios at a different place, so none always runs right after
                # another in the same process (whose request-log flush or GC would land in its window).
                order = names[rep % len(names):] + names[:rep % len(names)]
                for stream in (False, True):
                    for c in self.concurrencies:
                        for name in order:
                            url, model, proc = scenarios[name]
                            cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                            r = load(url, model, stream, c, self.per_run * (2 if c > 1 else 1), self.smoke)
                            if proc:
                                r["cpu_ms"] = (cpu_seconds(proc.pid) - cpu0) * 1000 / max(r["requests"], 1)
                            self.results.setdefault((name, stream, c), []).append(r)
                            for pname, pr in self.procs.items():
                                idle, peak = self.rss[pname]
                                self.rss[pname] = (idle, max(peak, rss_mib(pr.pid)))
        finally:
            stop_together(list(self.procs.values()))
            db.drop()
        return self.table(list(scenarios))

    def med(self, name: str, stream: bool, c: int, field: str) -> float:
        rs = self.results.get((name, stream, c))
        return statistics.median(r[field] for r in rs) if rs else float("nan")

    def table(self, names: list[str]) -> list[str]:
        rows = ["| scenario | body | conc. | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU ms/req | errors |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for stream in (False, True):
            for c in self.concurrencies:
                b50 = self.med("direct", stream, c, "p50_ms")
                b99 = self.med("direct", stream, c, "p99_ms")
                for name in names:
                    k = (name, stream, c)
                    direct = name == "direct"
                    a50 = "–" if direct else f"{self.med(name, stream, c, 'p50_ms') - b50:+.2f}"
                    a99 = "–" if direct else f"{self.med(name, stream, c, 'p99_ms') - b99:+.2f}"
                    cpu = "–" if direct else f"{self.med(name, stream, c, 'cpu_ms'):.2f}"
                    errors = sum(int(r["errors"]) for r in self.results[k])
                    rows.append(f"| {name} | {'SSE' if stream else 'JSON'} | {c} | {self.med(name, stream, c, 'rps'):,.0f} | "
                                f"{self.med(name, stream, c, 'p50_ms'):.2f} | {self.med(name, stream, c, 'p99_ms'):.2f} | "
                                f"{a50} | {a99} | {cpu} | {errors} |")
        rows += ["", "| process | start-up to first answer s | RSS idle MiB | RSS peak MiB |", "|---|---|---|---|"]
        for pname, proc in self.procs.items():
            idle, peak = self.rss[pname]
            rows.append(f"| {pname} | {proc.startup_s:.2f} | {idle:.0f} | {peak:.0f} |")
        return rows

    def targets(self) -> list[str]:
        top = self.concurrencies[-1]
        mid = self.concurrencies[1]
        pt = "passthrough (75-line Litestar + aiohttp)"
        b, c_, d, e = ("(b) gateway, forced tier", "(c) gateway, auto, default classifier (tiered)",
                       "(d) gateway, auto, embedding classifier", "(e) LiteLLM proxy")
        rows = ["| target | measured | met |", "|---|---|---|"]

        def add(what: str, value: str, ok: bool | None) -> None:
            rows.append(f"| {what} | {value} | {'yes' if ok else 'no' if ok is not None else 'not measured'} |")

        for stream, label, limit in ((False, "JSON", 2.0), (True, "SSE", 2.5)):
            what = f"(b) CPU per request ≤ {limit:g}x the passthrough's, {label}, c={mid}"
            base = self.med(pt, stream, mid, "cpu_ms")
            if base > 0:
                ratio = self.med(b, stream, mid, "cpu_ms") / base
                add(what, f"{ratio:.2f}x", ratio <= limit)
            else:  # a smoke run's few requests can cost the passthrough less than one clock tick (10 ms)
                add(what, "– (too few requests to read the passthrough's CPU)", None)
        a50 = self.med(b, False, 1, "p50_ms") - self.med("direct", False, 1, "p50_ms")
        a99 = self.med(b, False, 1, "p99_ms") - self.med("direct", False, 1, "p99_ms")
        add("(b) added p50 < 1 ms at c=1 (JSON)", f"{a50:.2f} ms", a50 < 1)
        add("(b) added p99 < 3 ms at c=1 (JSON)", f"{a99:.2f} ms", a99 < 3)
        for stream, label in ((False, "JSON"), (True, "SSE")):
            if (e, stream, top) in self.results:
                ratio = self.med(b, stream, top, "rps") / self.med(e, stream, top, "rps")
                add(f"(b) req/s at c={top} ≥ 10x LiteLLM's, {label}", f"{ratio:.1f}x", ratio >= 10)
            else:
                add(f"(b) req/s at c={top} ≥ 10x LiteLLM's, {label}", "LiteLLM not installed", None)
        for c in (mid, top):
            rb, rc = self.med(b, False, c, "rps"), self.med(c_, False, c, "rps")
            add(f"(c) auto with the default classifier within 10 % of (b), req/s at c={c}, JSON",
                f"{100 * (rc / rb - 1):+.1f} %", rc >= 0.9 * rb)
        dd = self.med(d, False, 1, "p50_ms") - self.med(b, False, 1, "p50_ms")
        add("(d) p50 over (b) at c=1 no more than the classifier's own latency", f"+{dd:.1f} ms (see classifiers)", None)
        idle = self.rss["gateway-embedding"][0]
        add("idle RSS with the embedding model loaded ≤ 335 MiB (LiteLLM's)", f"{idle:.0f} MiB", idle <= 335)
        start = self.procs["gateway"].startup_s
        add("start-up to the first answered request < 5 s", f"{start:.1f} s (with MiniLM: "
            f"{self.procs['gateway-embedding'].startup_s:.1f} s)", self.procs["gateway-embedding"].startup_s < 5)
        return rows


SECTIONS = ("overhead", "stack", "log-writer", "cache", "classifiers")


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench/run")
    ap.add_argument("--smoke", action="store_true", help="a few seconds of tiny load, to keep the code honest")
    ap.add_argument("--only", choices=SECTIONS, action="append",
                    help="run only these sections (repeatable); the result goes to bench/results/partial.md")
    args = ap.parse_args()
    only = set(args.only or SECTIONS)
    share_libssl11()  # one fetch for every gateway's embedded Redis, not one per data folder
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    kind = "smoke" if args.smoke else "full" if only == set(SECTIONS) else "partial"
    lines = [f"# bench/run ({kind} run, {started}, {machine()})"]
    with zygote(args.smoke) as forks:  # smoke: the servers are forked from one that has imported them
        def overhead() -> list[str]:
            ov = Overhead(args.smoke, forks)
            return ["## Gateway overhead", "", *ov.run(), "", "## Targets (ratios from this run)", "", *ov.targets()]

        sections: dict[str, Callable[[], list[str]]] = {
            "overhead": overhead,
            "stack": lambda: ["## Server stack (the same gateway, one client at a time)", "",
                              *server_stack.run(args.smoke, forks)],
            "log-writer": lambda: ["## Accounting: request-log writer", "", *log_writer.run(args.smoke)],
            "cache": lambda: ["## Cache through HTTP (one client at a time)", "", *cache_bench.run(args.smoke, forks)],
            "classifiers": lambda: ["## Classifiers (in process)", "", *classifiers.run(args.smoke)]}
        chosen = [section for name, section in sections.items() if name in only]
        if args.smoke:  # no figure is read: the sections run side by side, each with its own servers
            with ThreadPoolExecutor(len(chosen)) as pool:
                futures = [pool.submit(section) for section in chosen]
            tables = [f.result() for f in futures]
        else:
            tables = [section() for section in chosen]
    for table in tables:
        lines += ["", *table]
    text = "\n".join(lines)
    print(text)
    name = "smoke.md" if args.smoke else "latest.md" if kind == "full" else "partial.md"
    (ROOT / "bench" / "results" / name).write_text(text + "\n")


if __name__ == "__main__":
    main()
