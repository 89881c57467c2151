"""Start and stop the processes a benchmark needs, on loopback, and read their CPU time."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    def __init__(self, name: str, args: list[str], ready_url: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = int(ready_url.split(":")[2].split("/")[0])
        self.log = open(ROOT / "bench" / "results" / f"{name}.log", "w")
        started = time.perf_counter()
        self.p = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                if self.p.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name} did not start; see bench/results/{name}.log") from None
                time.sleep(0.05)
        self.startup_s = time.perf_counter() - started

    @property
    def pid(self) -> int:
        return self.p.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()  # reaped: no zombie left behind
        self.log.close()


def python() -> str:
    return sys.executable


def fake_openai(name: str, latency_ms: float = 0.0) -> tuple[Proc, str]:
    """The fake OpenAI-compatible upstream in its own process, and its base URL (without /v1)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc(name, [python(), "-m", "gateway.fakes", "--kind", "openai", "--port", str(port),
                       "--latency-ms", str(latency_ms)], f"{url}/v1/models"), url


GATEWAY_CONFIG = """
[server]
host = "127.0.0.1"
[auth]
enabled = {auth}
admin_key = "{admin_key}"
[cache]
enabled = {cache}
[log]
requests = {log_requests}
spill_dir = "{spill}"
[database]
url = "{db_url}"
[routing]
classifiers = [{classifiers}]
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


def gateway_config(upstream: str, db_url: str, spill: Path, *, log_requests: bool = True, cache: bool = False,
                   classifiers: str = '"heuristic"', admin_key: str | None = None) -> str:
    """A gateway in front of one fake upstream for every tier; auth off (as the others compared) unless an
    admin key is given."""
    return GATEWAY_CONFIG.format(upstream=upstream, db_url=db_url, spill=spill, log_requests=str(log_requests).lower(),
                                 cache=str(cache).lower(), classifiers=classifiers,
                                 auth=str(admin_key is not None).lower(), admin_key=admin_key or "")


def serve_gateway(name: str, cfg: Path, data_dir: Path | None = None, cmd: Sequence[str] = (),
                  env: dict[str, str] | None = None) -> Proc:
    """`smr serve` with this config on a free port (`cmd`: another way to start gateway.cli; `env`: more
    environment), ready."""
    port = free_port()
    env = {"SMR_LOG_LEVEL": "WARNING", **({"SMR_DATA_DIR": str(data_dir)} if data_dir else {}), **(env or {})}
    return Proc(name, [*(cmd or (python(), "-m", "gateway.cli")), "serve", "--config", str(cfg), "--port", str(port)],
                f"http://127.0.0.1:{port}/health", env=env)


@contextlib.contextmanager
def cached_gateway_backing(name: str, **config: Any) -> Iterator[tuple[Path, str]]:
    """A temporary folder, a scratch database and a fake upstream for a benchmark's gateways; yields the
    folder and a gateway config for them with the cache on. The upstream and database go at the end."""
    from tests.scratch import ScratchDatabase

    tmp = Path(tempfile.mkdtemp())
    db = ScratchDatabase()
    try:
        upstream, upstream_url = fake_openai(f"{name}-upstream")
        try:
            yield tmp, gateway_config(upstream_url, db.url, tmp / "spill", cache=True, **config)
        finally:
            upstream.stop()
    finally:
        db.drop()
