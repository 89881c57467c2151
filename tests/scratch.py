"""A throwaway PostgreSQL database (tests, benchmarks): on the local server if reachable, else embedded."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import psycopg

from gateway.db.embedded import EmbeddedPostgres

LOCAL = os.environ.get("SMR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


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
    return EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="smr-pg-")) / "data", cleanup="delete")
