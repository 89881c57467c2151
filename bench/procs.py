"""Start and stop the processes a benchmark needs, on loopback, and read their CPU time.

A smoke run (where no start-up figure is read) may start its Python servers from a `Zygote`: one process that
has imported what they import and forks each of them, so none pays the second of CPU its imports cost.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import platform
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """(status, body) of a plain-HTTP GET on loopback. http.client, not httpx: a new httpx client costs about
    30 ms of CPU (its TLS context), which a start-up poll every 50 ms, or a /metrics read per cell, pays each time."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""))
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def machine() -> str:
    """This machine in one line, for a table's heading: cores, CPU model, Python version."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# What the servers started from a zygote import: the gateway's command line, the fake upstreams, the passthrough, the floor.
PRELOAD = ("gateway.cli", "gateway.app", "gateway.edge.server", "uvicorn", "gateway.fakes.gemini_fake",
           "gateway.fakes.ollama_fake", "gateway.fakes.openai_fake", "bench.passthrough", "bench.floor")


class Forked:
    """A process a `Zygote` forked, with the part of `subprocess.Popen` that `Proc` uses (the zygote reaps it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None  # 0 once seen exited: its pid is never signalled again

    def poll(self) -> int | None:
        """None while it runs; 0 once it has exited (gone, or a zombie the zygote has not reaped yet)."""
        if self.returncode is None:
            try:
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                state = "X"
            self.returncode = 0 if state in ("Z", "X") else None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.02)
        return 0

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)


class Zygote:
    """`python -m bench.procs zygote`: imports PRELOAD once, then forks one child per `spawn` that runs a module
    as `python -m MODULE ARGS` would (its own environment, output to its log). It reaps its children, and is
    waited for at `close`, so their CPU time counts in this process's children's, as a Popen child's does."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([python(), "-m", "bench.procs", "zygote"], cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()  # one request and its answer at a time (start_together's threads)

    def spawn(self, module: str, args: Sequence[str], env: dict[str, str], log: Path) -> Forked:
        assert self.p.stdin is not None and self.p.stdout is not None
        with self.lock:
            self.p.stdin.write(json.dumps({"module": module, "args": list(args), "env": env, "log": str(log)}) + "\n")
            self.p.stdin.flush()
            answer = self.p.stdout.readline()
        if not answer.strip().isdigit():
            raise RuntimeError(f"the zygote did not fork {module}: {answer!r}")
        return Forked(int(answer))

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()  # it waits for its children, then exits
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@contextlib.contextmanager
def zygote(wanted: bool) -> Iterator[Zygote | None]:
    """A zygote for a smoke run's servers (`wanted`), closed at the end; None otherwise (each its own process)."""
    z = Zygote() if wanted else None
    try:
        yield z
    finally:
        if z is not None:
            z.close()


def _zygote_main() -> None:
    for module in PRELOAD:
        importlib.import_module(module)

    running: set[int] = set()  # forked and not reaped yet: the only pids it may signal

    def reap(*_: object) -> None:
        with contextlib.suppress(ChildProcessError):
            while (pid := os.waitpid(-1, os.WNOHANG)[0]) > 0:
                running.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        request = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # reaped only once it is in `running`
        pid = os.fork()
        if pid == 0:  # the child: becomes `python -m MODULE ARGS`, and never comes back to this loop
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [request["module"], *request["args"]]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            return  # the interpreter exits as after `python -m` (threads joined, atexit handlers run)
        running.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        print(pid, flush=True)
    # End of input (closed, or the benchmark died): a child still running is stopped as Proc.stop would.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()


class Proc:
    def __init__(self, name: str, args: list[str], ready_url: str, env: dict[str, str] | None = None,
                 zygote: Zygote | None = None, cwd: Path | None = None) -> None:
        """`args`, run in `cwd` (default: this checkout); with a zygote, a `python -m MODULE ...` command line
        is forked from it instead."""
        self.name = name
        self.port = int(ready_url.split(":")[2].split("/")[0])
        (ROOT / "bench" / "results").mkdir(exist_ok=True)  # not in a fresh clone (ignored)
        self.log = open(ROOT / "bench" / "results" / f"{name}.log", "w")
        started = time.perf_counter()
        self.p: subprocess.Popen[bytes] | Forked
        if zygote is not None and args[:2] == [python(), "-m"]:
            self.p = zygote.spawn(args[2], args[3:], {**os.environ, **(env or {})}, Path(self.log.name))
        else:
            self.p = subprocess.Popen(args, cwd=cwd or ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while True:
            try:
                http_get(ready_url, timeout=1)
                break
            except (OSError, http.client.HTTPException):
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

    def stop(self, signalled: bool = False) -> None:
        """SIGTERM (unless `signalled`: sent already), then SIGKILL after 10 s; reaped, its log closed."""
        if not signalled:
            self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()  # reaped: no zombie left behind
        self.log.close()


def python() -> str:
    return sys.executable


def start_together(starts: Sequence[Callable[[], Proc]]) -> list[Proc]:
    """Start these processes side by side (each start-up waits on its own imports and health poll, not on the
    others'); the ready processes in order. If one does not start, the others are stopped and it raises."""
    with ThreadPoolExecutor(max(len(starts), 1)) as pool:
        futures = [pool.submit(start) for start in starts]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for f in futures:
            if f.exception() is None:
                f.result().stop()
        raise failed[0]  # type: ignore[misc]
    return [f.result() for f in futures]


def stop_together(procs: Sequence[Proc]) -> None:
    """Stop these processes side by side: each is sent SIGTERM first, then each is waited for."""
    for p in procs:
        p.p.terminate()
    for p in procs:
        p.stop(signalled=True)


# Appended to a wrk script for a capped run (`run_wrk(..., requests=N)`): each thread stops after N answers and
# says so on stderr, where `run_wrk` waits for every thread's line and then ends wrk's -d early (SIGINT: wrk
# prints its report at once). Without the cap the script defines no `response`, so wrk parses no responses.
WRK_CAP_LUA = r"""
local smr_cap = tonumber(os.getenv("SMR_WRK_REQUESTS") or "") or 0
if smr_cap > 0 then
  local smr_answered = 0
  function response(status, headers, body)
    smr_answered = smr_answered + 1
    if smr_answered == smr_cap then
      io.stderr:write("smr-wrk: thread done\n"); io.stderr:flush()
      wrk.thread:stop()
    end
  end
end
"""


def run_wrk(args: Sequence[str], threads: int, requests: int | None = None, timeout: float | None = None) -> str:
    """wrk's report (stdout) for this command line (`args[0]` the wrk binary, its `-t` equal to `threads`).
    With `requests` (a smoke run: the code is checked, no figure is read), the script, which must include
    `WRK_CAP_LUA`, stops each thread after that many answers, and wrk reports then rather than at the end of
    its `-d` seconds: the same requests through the same servers, a fraction of the time."""
    if requests is None:
        return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=timeout).stdout
    for _ in range(3):
        p = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "SMR_WRK_REQUESTS": str(requests)})
        assert p.stderr is not None
        done, said = 0, []
        for line in p.stderr:  # EOF when wrk exits on its own (-d passed before every thread was done)
            if not line.startswith("smr-wrk: thread done"):
                said.append(line)  # a script error: wrk would go on without the script
                continue
            done += 1
            if done == threads:
                p.send_signal(signal.SIGINT)  # wrk's handler: stop waiting, print the report
                break
        out, err = p.communicate(timeout=timeout)
        if said:
            raise RuntimeError(f"wrk: {''.join(said)[-2000:]}")
        if p.returncode != -signal.SIGINT:  # (killed by it: it came before wrk set its handler; run it again)
            if p.returncode:
                raise subprocess.CalledProcessError(p.returncode, list(args), out, err)
            return out
    raise RuntimeError(f"wrk ended by SIGINT before it printed a report, three times: {list(args)}")


def fake_openai(name: str, latency_ms: float = 0.0, zygote: Zygote | None = None) -> tuple[Proc, str]:
    """The fake OpenAI-compatible upstream in its own process, and its base URL (without /v1)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc(name, [python(), "-m", "gateway.fakes", "--kind", "openai", "--port", str(port),
                       "--latency-ms", str(latency_ms)], f"{url}/v1/models", zygote=zygote), url


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
                  env: dict[str, str] | None = None, zygote: Zygote | None = None, cwd: Path | None = None) -> Proc:
    """`smr serve` with this config on a free port (`cmd`: another way to start gateway.cli; `env`: more
    environment; `zygote`: forked from it; `cwd`: another checkout's gateway), ready."""
    port = free_port()
    env = {"SMR_LOG_LEVEL": "WARNING", **({"SMR_DATA_DIR": str(data_dir)} if data_dir else {}), **(env or {})}
    return Proc(name, [*(cmd or (python(), "-m", "gateway.cli")), "serve", "--config", str(cfg), "--port", str(port)],
                f"http://127.0.0.1:{port}/health", env=env, zygote=zygote, cwd=cwd)


@contextlib.contextmanager
def cached_gateway_backing(name: str, zygote: Zygote | None = None, **config: Any) -> Iterator[tuple[Path, str]]:
    """A temporary folder, a scratch database and a fake upstream for a benchmark's gateways; yields the
    folder and a gateway config for them with the cache on. The upstream and database go at the end."""
    from tests.scratch import ScratchDatabase

    tmp = Path(tempfile.mkdtemp())
    db = ScratchDatabase()
    try:
        upstream, upstream_url = fake_openai(f"{name}-upstream", zygote=zygote)
        try:
            yield tmp, gateway_config(upstream_url, db.url, tmp / "spill", cache=True, **config)
        finally:
            upstream.stop()
    finally:
        db.drop()


if __name__ == "__main__" and sys.argv[1:] == ["zygote"]:
    _zygote_main()
