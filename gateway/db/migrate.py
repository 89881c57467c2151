"""Forward-only SQL migrations, applied in order under an advisory lock, recorded in schema_migrations.

Several replicas starting at once serialise on the lock; each migration is applied exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

log = logging.getLogger("gateway.db")
LOCK_ID = 0x534D525F4D4947  # "SMR_MIG"


def migrations_dir(configured: str | Path | None = None) -> Path:
    """`paths.migrations_dir` when set, else the project's migrations/ folder."""
    candidates = [Path(configured)] if configured else []
    candidates += [Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("migrations folder not found (set paths.migrations_dir or SMR_MIGRATIONS_DIR)")


def pending(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.sql") if p.name[:4].isdigit())


async def migrate(url: str, folder: Path | None = None) -> list[str]:
    """Apply every migration not yet recorded; return the names applied by this call."""
    folder = folder or migrations_dir()
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            cur = await conn.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for path in pending(folder):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())  # type: ignore[arg-type]
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                applied.append(path.name)
                log.info("applied migration %s", path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied
