"""Test helpers: the gateway under real uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import uvicorn

from gateway.app import create_app
from gateway.edge.server import uvicorn_options
from gateway.fakes.server import FakeUpstreams
from gateway.vocab.settings import Backend, Settings, Timeouts, parse_settings, validate

FAST = Timeouts(connect_s=1.0, first_token_s=2.0, total_s=4.0)
# A difficulty classifier's reason: what moved the score, in words, with the prompt's value and its signed share.
REASON = re.compile(r"(what the text is about|[a-zA-Z][\w ,.()-]*: (none|yes|no|[\d.]+( chars)?)) \([+-]\d\.\d\d\)")


class GatewayThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2, **uvicorn_options())
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def backends_for(fakes: FakeUpstreams, timeouts: Timeouts = FAST) -> list[Backend]:
    return [
        Backend(name="local", provider="ollama", model="granite4:350m", base_url=fakes.ollama_url,
                input_price=0.01, output_price=0.02, timeouts=timeouts),
        Backend(name="flash", provider="gemini", model="gemini-2.5-flash", base_url=fakes.gemini_url,
                api_key="test-key", input_price=0.30, output_price=2.50, timeouts=timeouts),
        Backend(name="pro", provider="gemini", model="gemini-2.5-pro", base_url=fakes.gemini_url,
                api_key="test-key", input_price=1.25, output_price=10.0, timeouts=timeouts),
        Backend(name="oai", provider="openai", model="gpt-4o-mini", base_url=fakes.openai_url,
                api_key="test-key", input_price=0.15, output_price=0.60, timeouts=timeouts),
    ]


def make_settings(fakes: FakeUpstreams, extra_backends: list[Backend] | None = None,
                  tiers: dict[str, list[str]] | None = None, db_url: str | None = None,
                  **sections: Any) -> Settings:
    """Settings for a test gateway in front of the fakes. Without `db_url`: no auth, no request log."""
    backends = backends_for(fakes) + (extra_backends or [])
    # The tests' prompts were chosen for the rule-based classifier's tiers (its rules are readable).
    routing = {"baseline": "pro", "classifiers": ["heuristic"], **sections.pop("routing", {})}
    data: dict[str, Any] = {
        "tiers": tiers or {"simple": ["local"], "medium": ["flash"], "complex": ["pro"]},
        "routing": routing,
        "auth": {"enabled": False},
        "log": {"requests": db_url is not None, "flush_interval_s": 0.05,
                "spill_dir": tempfile.mkdtemp(prefix="smr-spill-")},
        "database": {"url": db_url},
        "cache": {"enabled": False},
        **sections,
    }
    base = parse_settings(data)
    return validate(msgspec.structs.replace(base, backends=backends))


# The request log, read back (the tests' own connection).
def rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as c:
        return c.execute(sql, params).fetchall()  # type: ignore[arg-type]


def wait_for_rows(url: str, where: str, n: int, params: tuple[object, ...] = (), timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if rows(url, f"SELECT count(*) FROM request_log WHERE {where}", params)[0][0] >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} log rows where {where}")


def lookup_request(gw: GatewayThread, request_id: str, key: str) -> httpx.Response:
    """`GET /v1/requests/{id}` with `key`, retried while it is 404: the row is written a moment after the
    response."""
    deadline = time.time() + 10
    while True:
        r = httpx.get(gw.url + f"/v1/requests/{request_id}", headers={"Authorization": f"Bearer {key}"})
        if r.status_code != 404 or time.time() > deadline:
            return r
        time.sleep(0.05)


def new_api_key(gw: GatewayThread, admin_key: str, name: str, tenant: str, **limits: object) -> str:
    """A key made through `POST /v1/keys` with the admin key (any of the limit fields given)."""
    r = httpx.post(gw.url + "/v1/keys", json={"name": name, "tenant": tenant, **limits},
                   headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


class _Output(io.StringIO):
    """A command's stdout or stderr; what was written stays readable after the command closes it
    (`smr classify` writes in `with sys.stdout:`)."""

    def close(self) -> None:
        self.flush()


def _put_env(values: Mapping[str, str | None]) -> None:
    """Each variable set, or removed where its value is None."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def smr_in_process(args: Sequence[str], env: Mapping[str, str | None], cwd: Path | None = None,
                   ) -> subprocess.CompletedProcess[str]:
    """`smr ARGS` as `python -m gateway.cli` runs it (`SystemExit(main())`), in this process: each command
    would otherwise pay a second of imports, and loading the classifiers, again. `env` sets (or, with None,
    removes) variables for the call; the logging set-up the command makes is undone after it."""
    from gateway.cli import main

    loggers = [logging.getLogger(), *(v for v in logging.root.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    levels, handlers = [lg.level for lg in loggers], logging.getLogger().handlers[:]
    saved = {k: os.environ.get(k) for k in env}
    out, err = _Output(), _Output()
    try:
        _put_env(env)
        with contextlib.chdir(cwd or Path.cwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: int | str | None = main(list(args))
            except SystemExit as exc:
                code = exc.code if exc.code is None or isinstance(exc.code, int) else str(exc.code)
        if isinstance(code, str):  # as the interpreter does with SystemExit("message")
            err.write(code + "\n")
            code = 1
    finally:
        _put_env(saved)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for made in logging.root.manager.loggerDict.values():  # loggers the command made and set
            if isinstance(made, logging.Logger) and made not in loggers:
                made.setLevel(logging.NOTSET)
        logging.getLogger().handlers[:] = handlers
    return subprocess.CompletedProcess(["smr", *args], code or 0, out.getvalue(), err.getvalue())
