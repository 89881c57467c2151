"""Connections and memory (issue 24, defects 12 and 13): the gateway on stock uvicorn against the gateway with
its connection guard, each in its own process in front of a fake upstream (auth, cache and request log off:
the body is read the same way with a key).

- withheld bodies: N connections each send a chat request's head and all but the last byte of a body of
  S bytes; the gateway's RSS (psutil) before, while they are held, and 3 s after they closed; then N/2
  complete bodies of S bytes (unreadable JSON: read whole, answered 400) and the RSS 3 s after;
- slowloris: M connections from 127.0.0.1 send part of a request head; a legitimate request from
  127.0.0.2 is timed while they are open, and the ones still open after the header timeout are counted;
- the hot path: CPU milliseconds of the gateway per small request (bench.load, keep-alive), stock and
  guarded gateways up together and measured in turn, medians of the repeats; and the CPU microseconds of
  uvicorn's HTTP protocol alone per request (no sockets), stock and guarded, best of the repeats.

    python -m bench.connections [--bodies 200] [--size 3900000] [--slowloris 19950] [--requests 3000] [--repeats 3]

Writes bench/results/connections.md. The guarded gateway runs with the defaults except header_timeout_s
(2 s here, 10 s by default) so the run is short; `--serve` is the gateway side (internal).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.procs import ROOT, Proc, cpu_seconds, fake_openai, free_port, python

MODES = {"stock": "stock uvicorn (httptools), as before",
         "guard-no-trim": "connection guard, malloc_trim off",
         "guard": "connection guard (defaults, header_timeout_s = 2)"}
CHAT = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "What is a Python tuple?"}]})
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def serve(port: int, upstream: str, mode: str) -> None:
    """The gateway side: `smr serve`'s uvicorn.run with this mode's options."""
    import uvicorn

    import gateway.edge.connections
    from gateway.app import create_app
    from gateway.edge.server import uvicorn_options
    from gateway.vocab.settings import parse_settings, validate

    settings = validate(parse_settings({
        "server": {"header_timeout_s": 2.0}, "auth": {"enabled": False}, "cache": {"enabled": False},
        "log": {"requests": False, "level": "WARNING"}, "routing": {"classifiers": ["heuristic"], "baseline": "up"},
        "tiers": {"simple": ["up"], "medium": ["up"], "complex": ["up"]},
        "backends": [{"name": "up", "provider": "openai", "model": "bench-model", "base_url": f"{upstream}/v1",
                      "api_key": "bench"}]}))
    if mode == "guard-no-trim":
        gateway.edge.connections._malloc_trim = lambda: None  # type: ignore[assignment]
    options = uvicorn_options(settings) if mode != "stock" else {"http": "httptools", "access_log": False,
                                                                  "server_header": False}
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", **options)


def close_at_once(s: socket.socket) -> None:
    """Close with a reset: no TIME_WAIT, so thousands of connections do not use up the client's ports."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def withheld(port: int, pid: int, n: int, size: int) -> dict[str, float]:
    body = b"{" + b"a" * (size - 1)
    out = {"idle_mb": rss_mb(pid)}
    held: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            held.append(s)
            try:
                s.sendall(HEAD % size)
                s.sendall(body[:-1])
            except (BrokenPipeError, ConnectionResetError):
                refused += 1
        time.sleep(2)
        for s in held:  # a refusal is already there to read
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                if s.recv(65536).startswith(b"HTTP/1.1 503"):
                    refused += 1
        out["held_mb"] = rss_mb(pid)
    finally:
        for s in held:
            s.close()
    time.sleep(3)
    out["after_close_mb"] = rss_mb(pid)
    out["refused"] = refused
    complete = []
    for _ in range(n // 2):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        complete.append(s)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(HEAD % size + body)
    answered = 0
    for s in complete:
        with contextlib.suppress(OSError):
            answered += s.recv(64).startswith(b"HTTP/1.1 400")
        s.close()
    time.sleep(3)
    out["complete_answered_400"] = answered
    out["after_complete_mb"] = rss_mb(pid)
    return out


def chat_ms(port: int, source: str = "127.0.0.2") -> float:
    """A legitimate request's time from another address than the flood's (-1: it failed)."""
    import httpx

    t0 = time.perf_counter()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
            r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=CHAT,
                            headers={"content-type": "application/json"})
    except httpx.TransportError:
        return -1.0
    return (time.perf_counter() - t0) * 1000 if r.status_code == 200 else -1.0


def slowloris(port: int, pid: int, m: int) -> dict[str, float]:
    conns: list[socket.socket] = []
    try:
        for _ in range(m):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
            conns.append(s)
        out = {"open_fds_server": float(psutil.Process(pid).num_fds()), "legit_ms_during": chat_ms(port)}
        time.sleep(4)  # past the 2 s header timeout and a sweep
        still_open = 0
        for s in conns:
            s.setblocking(False)
            try:
                s.recv(65536)  # a 408 or the end: closed by the gateway
            except BlockingIOError:
                still_open += 1  # nothing to read and not closed
            except ConnectionResetError:
                pass
        out["still_open_after_4s"] = still_open
        out["open_fds_server_after"] = float(psutil.Process(pid).num_fds())
        return out
    finally:
        for s in conns:
            close_at_once(s)


def hot_path(port: int, pid: int, requests: int) -> dict[str, float]:
    """CPU of the gateway per small keep-alive request (4 at a time), and requests per second."""
    cmd = [python(), "-m", "bench.load", "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--body", CHAT,
           "--concurrency", "4"]
    subprocess.run([*cmd, "--requests", "200"], cwd=ROOT, check=True, capture_output=True)  # warm
    cpu0 = cpu_seconds(pid)
    r = json.loads(subprocess.run([*cmd, "--requests", str(requests)], cwd=ROOT, check=True, capture_output=True,
                                  text=True).stdout)
    return {"cpu_ms_per_request": (cpu_seconds(pid) - cpu0) * 1000 / requests, "rps": r["rps"],
            "errors": r["errors"]}


class _NullTransport:
    """Just enough transport for uvicorn's protocol: counts what it writes."""

    def __init__(self) -> None:
        self.closing = False
        self.writes = 0

    def get_extra_info(self, key: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(key, default)

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def protocol_us(repeats: int, n: int = 20_000) -> dict[str, float]:
    """CPU microseconds per keep-alive request in the HTTP protocol alone (no sockets, an app that answers
    at once), stock and guarded, in turn: the guard's own cost on the hot path. Best of the repeats."""
    import asyncio

    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from gateway.edge.server import uvicorn_options

    body = CHAT.encode()
    request = HEAD % len(body) + body

    async def run(cls: Any) -> float:
        config = Config(app=_ok_app, http=cls, log_level="warning")
        config.load()
        transport = _NullTransport()
        proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
        proto.connection_made(transport)
        t0 = time.process_time()
        for _ in range(n):
            proto.data_received(request)
            await asyncio.sleep(0)  # the app's task reads the body and answers
            await asyncio.sleep(0)
        spent = time.process_time() - t0
        proto.connection_lost(None)
        assert transport.writes >= 2 * n, "the app did not answer every request"
        return spent / n * 1e6

    best: dict[str, float] = {}
    classes = {"stock": HttpToolsProtocol, "guard": uvicorn_options()["http"]}
    for _ in range(repeats * 2):
        for mode, cls in classes.items():
            best[mode] = min(best.get(mode, float("inf")), asyncio.run(run(cls)))
    return {f"protocol_us_per_request_{m}": v for m, v in best.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bodies", type=int, default=200)
    p.add_argument("--size", type=int, default=3_900_000)
    p.add_argument("--slowloris", type=int, default=19_950)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--serve", nargs=3, metavar=("PORT", "UPSTREAM", "MODE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        serve(int(a.serve[0]), a.serve[1], a.serve[2])
        return
    upstream, upstream_url = fake_openai("connections-upstream")
    results: dict[str, dict[str, float]] = {}
    try:
        for mode in MODES:
            port = free_port()
            gw = Proc(f"connections-{mode}", [python(), "-m", "bench.connections", "--serve", str(port), upstream_url,
                                              mode], f"http://127.0.0.1:{port}/health")
            try:
                r = {**withheld(port, gw.pid, a.bodies, a.size)}
                if mode != "guard-no-trim":
                    r.update(slowloris(port, gw.pid, a.slowloris))
                results[mode] = r
                print(mode, json.dumps(r), file=sys.stderr)
            finally:
                gw.stop()
        gateways = {}
        try:  # the hot path: both gateways up, measured in turn, medians of the repeats
            for mode in ("stock", "guard"):
                port = free_port()
                gateways[mode] = Proc(f"connections-hot-{mode}", [python(), "-m", "bench.connections", "--serve",
                                                                  str(port), upstream_url, mode],
                                      f"http://127.0.0.1:{port}/health")
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in gateways}
            for _ in range(a.repeats):
                for mode, gw in gateways.items():
                    runs[mode].append(hot_path(gw.port, gw.pid, a.requests))
            for mode, rs in runs.items():
                results[mode].update({k: statistics.median(r[k] for r in rs) for k in rs[0]})
            micro = protocol_us(a.repeats)
            for mode in gateways:
                results[mode]["protocol_us_per_request"] = micro[f"protocol_us_per_request_{mode}"]
        finally:
            for gw in gateways.values():
                gw.stop()
    finally:
        upstream.stop()
    lines = [f"# Connections and memory (python -m bench.connections --bodies {a.bodies} --size {a.size} "
             f"--slowloris {a.slowloris} --requests {a.requests} --repeats {a.repeats})", "",
             "| | " + " | ".join(MODES[m] for m in results) + " |", "|---" * (len(results) + 1) + "|"]
    for key in dict.fromkeys(k for r in results.values() for k in r):
        lines.append(f"| {key} | " + " | ".join(
            f"{r[key]:.3f}" if key.startswith(("cpu", "protocol")) and key in r else
            f"{r[key]:.0f}" if key in r else "" for r in results.values()) + " |")
    text = "\n".join(lines)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    Path(ROOT / "bench" / "results" / "connections.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
