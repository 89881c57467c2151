"""`smr serve` and `smr demo`: the gateway under uvicorn (the demo in front of built-in fake upstreams).

`smr serve --workers N` (or `server.workers`) runs N processes on the port, one per core. The parent starts
the embedded PostgreSQL and Redis once (when no URL is given) and hands their URLs to the workers, so rate
limits and budgets hold across them as they do across replicas; it opens one SO_REUSEPORT socket per worker
(the kernel spreads connections), forks the workers, restarts one that dies after start-up, and on SIGTERM
or SIGINT stops them all, then the embedded servers. `/metrics` on any worker shows every worker's series,
labelled `worker="i"`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.cli.local import forget_demo, record_demo
from gateway.vocab.settings import Backend, Settings, load_settings, read_settings, validate

if TYPE_CHECKING:
    from gateway.fakes.server import FakeUpstreams

log = logging.getLogger("gateway")
DEMO_BODY = '{"model":"auto","messages":[{"role":"user","content":"Explain Python decorators"}]}'


def exit_cleanly_on_sigterm() -> None:
    """uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the handler it
    found. With the default action that kills the process before `finally` blocks and atexit handlers
    run, and the embedded PostgreSQL (stopped by one) is left running. A normal exit instead."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def _serve(settings: Settings, host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.edge.server import uvicorn_options

    if workers > 1:
        _serve_workers(settings, host or settings.server.host, port or settings.server.port, workers)
        return
    app = create_app(settings)
    app.state.tune_gc = settings.server.tune_gc  # the process is the gateway's alone: freeze its start-up objects
    exit_cleanly_on_sigterm()
    uvicorn.run(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level=settings.log.level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (gateway.infra.logs): JSON lines when log.format = json
        **uvicorn_options(settings),
    )


class _Stop(Exception):
    pass


def _listen(host: str, port: int, first: bool = False) -> socket.socket:
    """One listening socket on host:port that others may share (SO_REUSEPORT: the kernel balances). The
    first is bound without SO_REUSEPORT once before, so that a port another server holds is refused, not
    silently shared."""
    from gateway.vocab.errors import SettingsError

    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        if first:
            with socket.socket(info[0], socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(info[4])
                info = (*info[:4], probe.getsockname())  # port 0: the one the system chose
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(info[4])
        sock.listen(2048)
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _shared_stores(settings: Settings, stack: contextlib.ExitStack) -> Settings:
    """Start the embedded PostgreSQL and Redis once, for every worker; the settings with their URLs. Without
    Redis each worker counts its own limits, and says so."""
    from gateway.cache.embedded import EmbeddedRedis, EmbeddedRedisError
    from gateway.lifespan import open_database

    if settings.database.url is None and (settings.auth.enabled or settings.log.requests):
        url = asyncio.run(open_database(settings))  # the embedded server stops at this process's exit
        settings = msgspec.structs.replace(settings, database=msgspec.structs.replace(settings.database, url=url))
    if settings.redis.url is None:
        server = EmbeddedRedis(settings.paths.data_dir, settings.paths.libssl11_dir)
        try:
            url = server.start()
        except (EmbeddedRedisError, OSError) as exc:
            log.warning("no embedded Redis (%s): each worker keeps its own rate limits, budgets and cache", exc)
            return settings
        stack.callback(server.stop)
        settings = msgspec.structs.replace(settings, redis=msgspec.structs.replace(settings.redis, url=url))
    return settings


def _run_worker(app: Any, settings: Settings, sock: socket.socket, slot: Any) -> int:
    """In the forked child: serve on its socket until told to stop; the exit code."""
    import uvicorn

    from gateway.edge.server import uvicorn_options

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    app.state.worker = slot
    app.state.tune_gc = settings.server.tune_gc
    exit_cleanly_on_sigterm()
    config = uvicorn.Config(app, log_level=settings.log.level.lower(), log_config=None,
                            **uvicorn_options(settings))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


def _fork_worker(app: Any, settings: Settings, sockets: list[socket.socket], slot: Any) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for i, other in enumerate(sockets):
            if i != slot.index:
                other.close()
        code = _run_worker(app, settings, sockets[slot.index], slot)
    except BaseException:
        log.exception("worker %d failed", slot.index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not the parent's atexit handlers: they would stop the shared embedded PostgreSQL


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    from gateway.app import create_app
    from gateway.infra.metrics import WorkerSlot

    folder = tempfile.mkdtemp(prefix="smr-workers-")
    pids: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        try:
            sockets = [_listen(host, port, first=True)]
            sockets += [_listen(host, sockets[0].getsockname()[1]) for _ in range(workers - 1)]
            for s in sockets:
                stack.callback(s.close)
            settings = _shared_stores(settings, stack)
            app = create_app(settings)  # built once: the workers share its pages until they write to them
            log.warning("serving on http://%s:%d with %d workers", host, sockets[0].getsockname()[1], workers)
            for i in range(workers):
                pids[_fork_worker(app, settings, sockets, WorkerSlot(i, workers, folder))] = (i, time.monotonic())
            while True:
                time.sleep(0.5)
                for pid, (i, started) in list(pids.items()):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if not done:
                        continue
                    del pids[pid]
                    if time.monotonic() - started < 10:
                        log.error("worker %d exited during start-up (status %d): stopping", i, status)
                        raise _Stop()
                    log.warning("worker %d exited (status %d): starting it again", i, status)
                    pids[_fork_worker(app, settings, sockets, WorkerSlot(i, workers, folder))] = (i, time.monotonic())
        except _Stop:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop_workers(pids)


def _stop_workers(pids: dict[int, tuple[int, float]], grace_s: float = 20.0) -> None:
    """SIGTERM to every worker, then wait for each (a graceful shutdown: in-flight requests end, the request
    log is flushed); SIGKILL to any still running after `grace_s`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids:
        for pid in list(pids):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                del pids[pid]
            elif time.monotonic() > deadline:
                log.warning("worker %d did not stop within %.0f s: killed", pids[pid][0], grace_s)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                del pids[pid]
        time.sleep(0.05)


def demo_settings(settings: Settings, fakes: FakeUpstreams) -> Settings:
    """Point every backend at the built-in fake of its provider type and mark it simulated."""
    backends = [msgspec.structs.replace(b, base_url=fakes.url_for(b.provider), api_key="demo-key", simulated=True)
                for b in settings.backends]
    if not any(b.provider == "openai" for b in backends):
        backends.append(Backend(name="gpt-4o-mini", provider="openai", model="gpt-4o-mini",
                                base_url=fakes.url_for("openai"), api_key="demo-key", input_price=0.15,
                                output_price=0.60, simulated=True))
    return msgspec.structs.replace(settings, backends=backends)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _serve(settings, args.host, args.port, args.workers or settings.server.workers)
    return 0


async def _demo_key(settings: Settings) -> tuple[str, str]:
    """Start (or reach) the database and make an API key for the demo tenant."""
    from psycopg_pool import AsyncConnectionPool

    from gateway.db.keys import KeyStore
    from gateway.lifespan import open_database

    url = await open_database(settings)
    async with AsyncConnectionPool(url, min_size=1, max_size=1, open=False) as pool:
        new = await KeyStore(pool).create("demo", "demo")
    return url, new.key


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.fakes.server import ThreadedFakes

    settings = read_settings(args.config)
    made_up = settings.auth.admin_key is None
    if made_up:
        auth = msgspec.structs.replace(settings.auth, admin_key="smr_admin_" + secrets.token_urlsafe(24))
        settings = msgspec.structs.replace(settings, auth=auth)
    settings = validate(settings)
    fakes = ThreadedFakes().start_in_thread()
    settings = demo_settings(settings, fakes)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    api_key = "(auth is off: any key works)"
    if settings.auth.enabled:
        url, api_key = asyncio.run(_demo_key(settings))
        settings = msgspec.structs.replace(settings, database=msgspec.structs.replace(settings.database, url=url))
        if made_up:
            print(f"  admin key (made up for this demo; set SMR_ADMIN_KEY to choose one): {settings.auth.admin_key}",
                  file=sys.stderr)
        print(f"  API key for the demo tenant: {api_key}", file=sys.stderr)
    log.warning("DEMO MODE: every backend is SIMULATED by built-in fake servers (%s); answers are not real "
                "model output", ", ".join(f"{b.provider} {b.base_url}" for b in settings.backends))
    print(f"\n  Smart Model Router demo on http://{host}:{port}  (SIMULATED upstreams)\n"
          f"  try: curl -s http://{host}:{port}/v1/chat/completions -H 'content-type: application/json' "
          f"-H 'Authorization: Bearer {api_key}' -d '{DEMO_BODY}'\n",
          file=sys.stderr, flush=True)
    record_demo(settings, host, port)  # for smr doctor and smr cache, run beside it
    try:
        _serve(settings, host, port)
    finally:
        forget_demo(settings)
        fakes.stop_thread()
    return 0


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $SMR_CONFIG, then ./config.toml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, choices=range(1, 257), metavar="N",
                       help="processes serving the port, e.g. one per core (default: server.workers, 1)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run the gateway in front of built-in simulated upstreams")
    demo.add_argument("--config", help="config file (default: $SMR_CONFIG, then ./config.toml)")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.set_defaults(func=cmd_demo)
