"""`smr serve` and `smr demo`: the gateway under uvicorn (the demo in front of built-in fake upstreams)."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
from types import FrameType
from typing import Any

import msgspec

from gateway.cli.local import forget_demo, record_demo
from gateway.settings import Backend, Settings, load_settings, read_settings, validate

log = logging.getLogger("gateway")
DEMO_BODY = '{"model":"auto","messages":[{"role":"user","content":"Explain Python decorators"}]}'


def _exit_cleanly_on_sigterm() -> None:
    """uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the handler it
    found. With the default action that kills the process before `finally` blocks and atexit handlers
    run, and the embedded PostgreSQL (stopped by one) is left running. A normal exit instead."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.server import uvicorn_options

    app = create_app(settings)
    _exit_cleanly_on_sigterm()
    uvicorn.run(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level=settings.log.level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (gateway.logs): JSON lines when log.format = json
        **uvicorn_options(),
    )


def demo_settings(settings: Settings, ollama_url: str, gemini_url: str, openai_url: str) -> Settings:
    """Point every backend at the built-in fake upstreams and mark it simulated."""
    urls = {"ollama": ollama_url, "gemini": gemini_url, "openai": openai_url}
    backends = [msgspec.structs.replace(b, base_url=urls[b.provider], api_key="demo-key", simulated=True)
                for b in settings.backends]
    if not any(b.provider == "openai" for b in backends):
        backends.append(Backend(name="gpt-4o-mini", provider="openai", model="gpt-4o-mini", base_url=openai_url,
                                api_key="demo-key", input_price=0.15, output_price=0.60, simulated=True))
    return msgspec.structs.replace(settings, backends=backends)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _serve(settings, args.host, args.port)
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
    settings = demo_settings(settings, fakes.ollama_url, fakes.gemini_url, fakes.openai_url)
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
    log.warning("DEMO MODE: every backend is SIMULATED by built-in fake servers "
                "(ollama %s, gemini %s, openai %s); answers are not real model output",
                fakes.ollama_url, fakes.gemini_url, fakes.openai_url)
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
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run the gateway in front of built-in simulated upstreams")
    demo.add_argument("--config", help="config file (default: $SMR_CONFIG, then ./config.toml)")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.set_defaults(func=cmd_demo)
