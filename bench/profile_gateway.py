"""Where the gateway's CPU goes: cProfile of the gateway (in this process) under load from another.

    python -m bench.profile_gateway [--requests 3000] [--concurrency 8] [--top 25]
    python -m bench.profile_gateway --default-config [--semantic/--no-semantic] [--requests 600] [--concurrency 1]

Without `--default-config` the gateway runs with auth, cache and the request log off and one
OpenAI-compatible fake upstream (`model: oai`), so the profile shows the request path itself: HTTP
edge, routing, the adapter and its SDK.

With `--default-config` it is built as `bench.hotpath`'s default target: auth on with a key that has a
rate limit and a budget, the default classifier pipeline, exact (and, unless `--no-semantic`, semantic)
cache on the embedded redis-stack-server, the request log on a scratch database, and a fake upstream in
its own process; every request a new prompt, so each is a cache miss. The table then reads in
microseconds per request (own and cumulative CPU time of each function, `time.thread_time` of the event
loop's thread only: the model's onnxruntime threads and Redis do not show). `--no-peek` sends the exact
cache's GET alone, as before it went in one pipeline with the admit script, for a side-by-side profile.

cProfile inflates code that makes many small calls (several times over: its total reads ~4x the real CPU).
`--sample` profiles by sampling instead (SIGPROF every 0.5 ms of the process's CPU, the event loop's stack
counted): shares as they really are, with a C call counted in the Python function that made it. Every run
also prints the event loop thread's own CPU per request (without Redis's, the fake upstream's or the model's
threads), a steadier number to compare two trees by than the process tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from bench.procs import ROOT, free_port
from gateway.app import create_app
from gateway.fakes.server import ThreadedFakes
from tests.helpers import make_settings


def per_request_table(profiler: cProfile.Profile, requests: int, top: int, sort: str) -> str:
    """The `top` functions by own (`tottime`) or cumulative time, in microseconds per request."""
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_cc, calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append((tt, ct, calls, where))
    rows.sort(key=lambda r: r[0] if sort == "tottime" else r[1], reverse=True)
    total = sum(r[0] for r in rows)
    out = [f"total profiled time: {total * 1e6 / requests:,.0f} us per request ({requests} requests)",
           f"| own us/req | cum us/req | calls/req | function (sorted by {sort}) |", "|---:|---:|---:|---|"]
    for tt, ct, calls, where in rows[:top]:
        out.append(f"| {tt * 1e6 / requests:,.1f} | {ct * 1e6 / requests:,.1f} | {calls / requests:.1f} | {where} |")
    return "\n".join(out)


class Sampler:
    """A statistical profile of the main thread (where the server's event loop runs): every `every_s` of the
    process's CPU time (ITIMER_PROF) the interrupted stack is counted. Its cost is a few percent, spread
    evenly, so shares read as the real ones, unlike cProfile's, which inflates code that makes many calls."""

    def __init__(self, every_s: float = 0.0005) -> None:
        self.every_s = every_s
        self.leaf: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.total = 0

    @staticmethod
    def where(frame: types.FrameType) -> str:
        file = frame.f_code.co_filename
        if "site-packages/" in file:
            file = file.split("site-packages/")[1]
        elif str(ROOT) in file:
            file = file.split(str(ROOT) + "/")[1]
        else:
            file = Path(file).name
        return f"{file}:{frame.f_code.co_name}"

    def _sample(self, _signum: int, frame: types.FrameType | None) -> None:
        self.total += 1
        seen = set()
        f = frame
        if f is not None:
            self.leaf[self.where(f)] += 1
        while f is not None:
            w = self.where(f)
            if w not in seen:
                seen.add(w)
                self.inclusive[w] += 1
            f = f.f_back

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.every_s, self.every_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def table(self, top: int) -> str:
        """Shares of the samples: by function (own, and with what it calls), and by package or module (own)."""
        by_module: collections.Counter[str] = collections.Counter()
        for w, n in self.leaf.items():
            file = w.split(":")[0]
            by_module[file.split("/")[0] if "/" not in file or not file.startswith(("gateway", "router_core"))
                      else file] += n
        total = max(self.total, 1)
        out = [f"{self.total} samples (one per {self.every_s * 1e3:g} ms of the process's CPU)",
               "| own % | function |", "|---:|---|"]
        out += [f"| {100 * n / total:.1f} | {w} |" for w, n in self.leaf.most_common(top)]
        out += ["", "| with callees % | function |", "|---:|---|"]
        out += [f"| {100 * n / total:.1f} | {w} |" for w, n in self.inclusive.most_common(top)]
        out += ["", "| own % | package or module |", "|---:|---|"]
        out += [f"| {100 * n / total:.1f} | {w} |" for w, n in by_module.most_common(top)]
        return "\n".join(out)


class TaskCount:
    """A task factory that counts the tasks the event loop creates, by the coroutine each runs."""

    def __init__(self) -> None:
        self.made: collections.Counter[str] = collections.Counter()

    def factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        self.made[f"{Path(code.co_filename).name}:{code.co_qualname}" if code else type(coro).__name__] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    def table(self, requests: int) -> str:
        rows = [f"| {n / requests:.2f} | {where} |" for where, n in self.made.most_common()]
        total = sum(self.made.values()) / requests
        return "\n".join(["| tasks / request | coroutine |", "|---:|---|", *rows, f"| {total:.2f} | all |"])


def gateway_cpu_s(exclude: list[int]) -> float:
    """CPU seconds of this process and its descendants (the embedded Redis), less those in `exclude` (and theirs)."""
    from bench.hotpath import tree_cpu_s

    return tree_cpu_s(os.getpid()) - sum(tree_cpu_s(pid) for pid in exclude)


def default_config_app(tmp: Path, db_url: str, upstream_url: str, semantic: bool) -> object:
    from bench.hotpath import default_config, libssl_env
    from gateway.vocab.settings import load_settings

    cfg = tmp / "config.toml"
    cfg.write_text(default_config(upstream_url, db_url, tmp / "spill", semantic))
    env = {**os.environ, "SMR_DATA_DIR": str(tmp), "SMR_LOG_LEVEL": "WARNING", **libssl_env()}
    return create_app(load_settings(cfg, env))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_gateway")
    ap.add_argument("--requests", type=int, default=None, help="default 3000, or 600 with --default-config")
    ap.add_argument("--concurrency", type=int, default=None, help="default 8, or 1 with --default-config")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--default-config", action="store_true", help="bench.hotpath's default target (see above)")
    ap.add_argument("--semantic", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--cpu-only", action="store_true",
                    help="no profiler: CPU per request of this process tree (the gateway, its embedded Redis; not the "
                         "upstream's)")
    ap.add_argument("--sample", action="store_true",
                    help="a statistical profile (SIGPROF samples of the event loop's thread) instead of cProfile")
    ap.add_argument("--tasks", action="store_true",
                    help="no profiler: count the asyncio tasks created per request, by the coroutine each runs")
    ap.add_argument("--save", type=Path, default=None, help="also write the raw profile (pstats) to this file")
    ap.add_argument("--no-peek", action="store_true",
                    help="the exact cache's GET in a round trip of its own, not with the admit script (the old path)")
    args = ap.parse_args()
    requests = args.requests or (600 if args.default_config else 3000)
    concurrency = args.concurrency or (1 if args.default_config else 8)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cleanup: list[object] = []
    fakes = None
    tmp = Path(tempfile.mkdtemp(prefix="smr-profile-"))
    headers: list[str] = []
    not_ours: list[int] = []  # child processes whose CPU is not the gateway's (the fake upstream)
    if args.no_peek:
        import gateway.path.request_path

        gateway.path.request_path.shared_redis = lambda cache, admission: False  # type: ignore[assignment]
    if args.default_config:
        from bench.procs import fake_openai
        from tests.scratch import ScratchDatabase

        db = ScratchDatabase()
        cleanup.append(db.drop)
        upstream, upstream_url = fake_openai("profile-upstream")
        cleanup.append(upstream.stop)
        not_ours.append(upstream.pid)
        app = default_config_app(tmp, db.url, upstream_url, args.semantic)
        model = "auto"
    else:
        fakes = ThreadedFakes().start_in_thread()
        app = create_app(make_settings(fakes))
        model = "oai"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                           log_level="warning", access_log=False))
    bodies = tmp / "bodies.jsonl"
    extra = {"stream": True, "stream_options": {"include_usage": True}} if args.stream else {}
    with bodies.open("w") as f:  # a new prompt every request: each a cache miss
        for i in range(requests + 20):
            f.write(json.dumps({"model": model, "messages": [{"role": "user", "content":
                    f"Question p-{i}: how do I reverse a list of {i} strings in Python?"}], **extra}) + "\n")
    result: dict[str, str] = {}
    # CPU time of the server's thread (the event loop's), not wall time: a loaded machine's preemptions do not count
    profiler = cProfile.Profile(time.thread_time)
    sampler = Sampler()
    tasks = TaskCount()

    def load(n: int, conc: int) -> str:
        cmd = [sys.executable, "-m", "bench.load", "--url", f"{url}/v1/chat/completions", "--bodies", str(bodies),
               "--concurrency", str(conc), "--requests", str(n), *headers, *(["--stream"] if args.stream else [])]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    def on_loop(fn: Callable[[], None]) -> None:
        """Run `fn` in the server's thread (cProfile profiles the thread that enables it), and wait for it."""
        done = threading.Event()

        def call() -> None:
            fn()
            done.set()

        loop.call_soon_threadsafe(call)
        done.wait()

    def drive() -> None:
        try:
            while not server.started:
                time.sleep(0.05)
            if args.default_config:
                from bench.hotpath import make_key

                headers.extend(["--header", f"Authorization: Bearer {make_key(url)}"])
                load(20, 1)  # warm: first passes of the models, pools (not profiled)
            loop_cpu: list[float] = []
            on_loop(lambda: loop_cpu.append(time.thread_time()))
            cpu0 = gateway_cpu_s(not_ours)
            if args.sample:
                on_loop(sampler.start)
            elif args.tasks:
                on_loop(lambda: loop.set_task_factory(tasks.factory))
            elif not args.cpu_only:
                on_loop(profiler.enable)
            result["load"] = load(requests, concurrency)
            if args.sample:
                on_loop(sampler.stop)
            elif args.tasks:
                on_loop(lambda: loop.set_task_factory(None))
            elif not args.cpu_only:
                on_loop(profiler.disable)
            result["cpu"] = f"{(gateway_cpu_s(not_ours) - cpu0) * 1e6 / requests:,.0f} us CPU per request"
            on_loop(lambda: loop_cpu.append(time.thread_time()))
            result["loop"] = f"{(loop_cpu[1] - loop_cpu[0]) * 1e6 / requests:,.0f} us CPU per request"
        finally:
            server.should_exit = True

    threading.Thread(target=drive, daemon=True).start()
    try:
        factory = server.config.get_loop_factory()
        loop = factory() if factory is not None else asyncio.new_event_loop()
        loop.run_until_complete(server.serve())
        loop.close()
    finally:
        if fakes is not None:
            fakes.stop_thread()
        for stop in reversed(cleanup):
            stop()  # type: ignore[operator]
        shutil.rmtree(tmp, ignore_errors=True)
    print("load:", result.get("load"))
    print("gateway process tree:", result.get("cpu"),
          "(no profiler)" if args.cpu_only else "(sampling)" if args.sample else "(counting tasks)" if args.tasks
          else "(profiler on)")
    print("event loop's thread:", result.get("loop"), "(no Redis, no model threads)")
    if args.tasks:
        print(tasks.table(requests))
        return
    if args.cpu_only:
        return
    if args.sample:
        print(sampler.table(args.top))
        return
    if args.save is not None:
        profiler.dump_stats(str(args.save))
    print(per_request_table(profiler, requests, args.top, "tottime"))
    print()
    print(per_request_table(profiler, requests, args.top, "cumulative"))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.top)
    print(text.getvalue())


if __name__ == "__main__":
    main()
