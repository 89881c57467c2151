"""Request-log writer throughput: rows/s through LogWriter (one INSERT ... FROM jsonb_to_recordset per batch)
against one-by-one INSERTs."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

import psycopg

from gateway.db.log_writer import COLUMNS, LogRow, LogWriter
from gateway.db.migrate import migrate
from tests.scratch import ScratchDatabase


def make_rows(n: int, tag: str) -> list[LogRow]:
    now = dt.datetime.now(dt.UTC)
    return [LogRow(request_id=f"{tag}-{i}", ts=now, endpoint="/v1/chat/completions", cache_status="miss",
                   latency_ms=1.5, http_status=200, tenant="bench", tier="simple", backend="local",
                   provider="ollama", prompt_tokens=12, completion_tokens=40, cost_usd=1e-6,
                   baseline_cost_usd=4e-4, savings_usd=3.99e-4) for i in range(n)]


async def writer_rate(url: str, n: int) -> float:
    writer = LogWriter(url, Path(tempfile.mkdtemp()), batch_size=1000, flush_interval_s=0.05, buffer_max=n + 1)
    rows = make_rows(n, "w")
    started = time.perf_counter()
    for r in rows:
        writer.record(r)
    while writer.stats.buffered:
        await writer.flush()
    elapsed = time.perf_counter() - started
    await writer.close()
    return n / elapsed


async def insert_rate(url: str, n: int) -> float:
    rows = make_rows(n, "i")
    sql = f"INSERT INTO request_log ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for r in rows:
            await conn.execute(sql, tuple(getattr(r, c) for c in COLUMNS))  # type: ignore[arg-type]
        return n / (time.perf_counter() - started)


def run(smoke: bool) -> list[str]:
    n = 500 if smoke else 20_000
    db = ScratchDatabase()
    try:
        asyncio.run(migrate(db.url))
        w = asyncio.run(writer_rate(db.url, n))
        i = asyncio.run(insert_rate(db.url, n // 10))
    finally:
        db.drop()
    return ["| log writer | rows/s |", "|---|---|",
            f"| LogWriter (one jsonb_to_recordset INSERT per batch of 1000), {n:,} rows | {w:,.0f} |",
            f"| one INSERT per row, autocommit, {n // 10:,} rows | {i:,.0f} |",
            "", f"LogWriter / one-by-one: {w / i:.0f}x"]
