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
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
            cpu0 = gateway_cpu_s(not_ours)
            if not args.cpu_only:
                on_loop(profiler.enable)
            result["load"] = load(requests, concurrency)
            if not args.cpu_only:
                on_loop(profiler.disable)
            result["cpu"] = f"{(gateway_cpu_s(not_ours) - cpu0) * 1e6 / requests:,.0f} us CPU per request"
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
    print("gateway process tree:", result.get("cpu"), "(profiler on)" if not args.cpu_only else "(no profiler)")
    if args.cpu_only:
        return
    print(per_request_table(profiler, requests, args.top, "tottime"))
    print()
    print(per_request_table(profiler, requests, args.top, "cumulative"))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.top)
    print(text.getvalue())


if __name__ == "__main__":
    main()
