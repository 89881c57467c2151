"""Where the gateway's CPU goes: cProfile of the gateway (in this process) under load from another.

    python -m bench.profile_gateway [--requests 3000] [--concurrency 8] [--top 25]

The gateway runs with auth, cache and the request log off and one OpenAI-compatible fake upstream
(`model: oai`), so the profile shows the request path itself: HTTP edge, routing, the adapter and
its SDK.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import threading
import time

import uvicorn

from bench.procs import ROOT, free_port
from gateway.app import create_app
from gateway.fakes.server import ThreadedFakes
from tests.helpers import make_settings


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_gateway")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    fakes = ThreadedFakes().start_in_thread()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(make_settings(fakes)), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    body = json.dumps({"model": "oai", "messages": [{"role": "user", "content": "Explain lists and tuples"}]})
    result: dict[str, str] = {}

    def drive() -> None:
        while not server.started:
            time.sleep(0.05)
        cmd = [sys.executable, "-m", "bench.load", "--url", f"http://127.0.0.1:{port}/v1/chat/completions",
               "--body", body, "--concurrency", str(args.concurrency)]
        out = subprocess.run([*cmd, "--requests", str(args.requests)], cwd=ROOT, capture_output=True, text=True,
                             check=True)
        result["load"] = out.stdout
        server.should_exit = True

    # cProfile sees the thread that enables it: the server's, start-up included (a small share).
    profiler = cProfile.Profile()
    threading.Thread(target=drive, daemon=True).start()
    profiler.enable()
    server.run()
    profiler.disable()
    fakes.stop_thread()
    print("load:", result.get("load"))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.top)
    print(text.getvalue())


if __name__ == "__main__":
    main()
