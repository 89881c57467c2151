"""The request log, written off the request path.

`record()` only appends to an in-memory buffer. A background task flushes batches with COPY into a
staging table and `INSERT ... ON CONFLICT DO NOTHING` (so a batch retried after a lost commit is
never written twice). When a write fails (Postgres down), the buffered rows spill to a local
JSON-lines file at each retry, so a crash during an outage loses at most one retry interval's rows;
the buffer also spills, oldest first, past `buffer_max`. Once Postgres is back, spilled rows are
written before newer ones. `close()` flushes, and spills whatever it could not write.

No row can stop the log: text is cleaned before it is written (NUL bytes, which Postgres text
refuses, and unpaired surrogates are removed; long fields are cut), and a batch the database refuses
for its content (not for being unreachable) is written again row by row, each refused row set aside
with its error in `request_log.quarantine.jsonl` beside the spill files.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections import deque
from pathlib import Path

import msgspec
import psycopg

from gateway.pids import pid_alive

log = logging.getLogger("gateway.log_writer")


class LogRow(msgspec.Struct, frozen=True):
    request_id: str
    ts: dt.datetime
    endpoint: str
    cache_status: str
    latency_ms: float
    http_status: int
    key_id: str | None = None
    tenant: str | None = None
    requested_model: str | None = None
    tier: str | None = None
    classifier: str | None = None
    score: float | None = None
    backend: str | None = None
    provider: str | None = None
    attempts: int = 0
    fallback_errors: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    savings_usd: float = 0.0
    usage_estimated: bool = False
    ttft_ms: float | None = None
    stream: bool = False
    error_type: str | None = None
    prompt: str | None = None
    explanation: str | None = None  # the response's `smr` object, as JSON
    cache_savings_usd: float = 0.0  # the part of savings_usd a cache hit saved (the rest: routing)
    shadow_tier: str | None = None  # shadow mode: what routing would have chosen, and its price
    shadow_backend: str | None = None
    shadow_cost_usd: float | None = None
    cascade_reason: str | None = None  # why a cheap answer went to the next tier
    client_request_id: str | None = None  # the client's x-request-id, when it sent one


COLUMNS = LogRow.__struct_fields__
_COPY = f"COPY request_log_stage ({', '.join(COLUMNS)}) FROM STDIN"
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS request_log_stage "
          "(LIKE request_log INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_MERGE = (f"INSERT INTO request_log ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM request_log_stage "
          "ON CONFLICT (request_id) DO NOTHING")
_row_decoder = msgspec.json.Decoder(LogRow)
_encoder = msgspec.json.Encoder()


class WriterStats(msgspec.Struct):
    written: int = 0
    buffered: int = 0
    spilled: int = 0
    dropped: int = 0
    flush_errors: int = 0
    db_up: bool = True
    quarantined: int = 0


class Quarantined(msgspec.Struct):
    error: str
    row: LogRow | None = None
    line: str | None = None  # a spill-file line that could not be read back


# Longest text kept per column; the rest of a field is cut (a 1 MB `model` is not worth a row's space).
_MAX_CHARS = {"requested_model": 256, "fallback_errors": 4_000, "prompt": 200_000, "explanation": 50_000}
_DEFAULT_MAX_CHARS = 1_000
_TEXT_FIELDS = tuple(f for f, t in zip(LogRow.__struct_fields__, msgspec.structs.fields(LogRow), strict=True)
                     if "str" in str(t.type))
# What a row's content can make the database (or the COPY encoder) refuse. Anything else (unreachable,
# a missing table) is not the rows' fault: they wait for the database to come back.
_REFUSED = (psycopg.DataError, psycopg.IntegrityError, ValueError, TypeError, OverflowError)


def _clean_text(value: str, limit: int) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "")
    if "\\u0000" in value:  # JSON's escape of NUL, which jsonb refuses too
        value = value.replace("\\u0000", "")
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode(errors="replace").decode()
    return value[:limit]


def clean_row(row: LogRow) -> LogRow:
    """The row with every text field as Postgres accepts it and within its length."""
    changes: dict[str, str] = {}
    for f in _TEXT_FIELDS:
        v = getattr(row, f)
        if v is None:
            continue
        limit = _MAX_CHARS.get(f, _DEFAULT_MAX_CHARS)
        if len(v) > limit or "\x00" in v or "\\u0000" in v or not v.isascii():
            cleaned = _clean_text(v, limit)
            if cleaned != v:
                changes[f] = cleaned
    return msgspec.structs.replace(row, **changes) if changes else row


class LogWriter:
    def __init__(self, url: str, spill_dir: Path, *, batch_size: int = 1000, flush_interval_s: float = 0.25,
                 buffer_max: int = 20_000, retry_s: float = 1.0, write_timeout_s: float = 5.0) -> None:
        self.url = url
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.buffer_max = buffer_max
        self.retry_s = retry_s
        # A write that takes longer (a frozen database) counts as failed: its rows go to the spill file.
        self.write_timeout_s = write_timeout_s
        self.spill_dir = spill_dir
        self.spill_path = spill_dir / f"request_log.{os.getpid()}.jsonl"
        self.quarantine_path = spill_dir / "request_log.quarantine.jsonl"
        self._buffer: deque[LogRow] = deque()
        self._stats = WriterStats()
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._spilled_rows = 0  # rows in the spill file not yet written

    # ------------------------------------------------------------ request path
    def record(self, row: LogRow) -> None:
        """Never blocks, never raises: the request does not wait on the database."""
        self._buffer.append(row)
        if len(self._buffer) > self.buffer_max:
            self._spill(self.buffer_max // 2)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def stats(self) -> WriterStats:
        s = self._stats
        return WriterStats(s.written, len(self._buffer), s.spilled, s.dropped, s.flush_errors, s.db_up, s.quarantined)

    # ------------------------------------------------------------ background
    def start(self) -> None:
        self._adopt_orphan_spills()
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            ok = await self.flush()
            if not ok:
                await asyncio.sleep(self.retry_s)

    async def flush(self) -> bool:
        """Write spilled rows, then buffered ones. False when Postgres could not be reached."""
        try:
            if self._spilled_rows:
                await self._replay_spill()
            while self._buffer:
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                try:
                    await self._write_or_quarantine(batch)
                except BaseException:
                    self._buffer.extendleft(reversed(batch))
                    raise
        except (psycopg.Error, OSError) as exc:
            self._stats.flush_errors += 1
            if self._stats.db_up:
                log.warning("request log: cannot write to Postgres (%s); buffering %d rows",
                            type(exc).__name__, len(self._buffer))
            self._stats.db_up = False
            await self._drop_connection()
            # While the database is away, rows go to disk at every attempt (not once memory is full), so
            # a crash loses at most the rows of one retry interval.
            if self._buffer:
                self._spill(len(self._buffer))
            return False
        if not self._stats.db_up:
            log.warning("request log: Postgres is back; backlog written")
        self._stats.db_up = True
        return True

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=3)
            await self._conn.execute(_STAGE)
            await self._conn.commit()
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def _write(self, rows: list[LogRow]) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                conn = await self._connection()
                async with conn.transaction():
                    async with conn.cursor().copy(_COPY) as copy:
                        for r in rows:
                            await copy.write_row(tuple(getattr(r, c) for c in COLUMNS))
                    await conn.execute(_MERGE)
        except TimeoutError:
            self._conn = None  # abandoned, not closed: closing would wait on the frozen server too
            raise
        self._stats.written += len(rows)

    async def _write_or_quarantine(self, rows: list[LogRow]) -> None:
        """Write a batch; if the database refuses its content, write the rows one by one and set aside
        each one it refuses. Raises only when the database cannot be reached (the rows wait)."""
        rows = [clean_row(r) for r in rows]
        try:
            await self._write(rows)
            return
        except _REFUSED as exc:  # the content: a value out of range, a constraint, an encoding
            if len(rows) == 1:
                self._quarantine(Quarantined(f"{type(exc).__name__}: {exc}"[:500], row=rows[0]))
                return
        for row in rows:
            await self._write_or_quarantine([row])

    def _quarantine(self, item: Quarantined) -> None:
        self._stats.quarantined += 1
        log.error("request log: a row was refused and set aside in %s: %s", self.quarantine_path, item.error)
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            with self.quarantine_path.open("ab") as f:
                f.write(_encoder.encode(item) + b"\n")
        except OSError as exc:
            self._stats.dropped += 1
            log.error("request log: could not write %s: %s", self.quarantine_path, exc)

    # ------------------------------------------------------------ spill file
    def _spill(self, count: int) -> None:
        rows = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            with self.spill_path.open("ab") as f:
                f.write(b"".join(_encoder.encode(clean_row(r)) + b"\n" for r in rows))
        except OSError as exc:
            self._stats.dropped += len(rows)
            log.error("request log: could not spill %d rows to %s: %s", len(rows), self.spill_path, exc)
            return
        self._stats.spilled += len(rows)
        self._spilled_rows += len(rows)

    def _adopt_orphan_spills(self) -> None:
        """Spill files left by earlier processes are taken over (rename is atomic: one replica wins)."""
        if not self.spill_dir.is_dir():
            return
        orphans = list(self.spill_dir.glob("request_log.*.jsonl"))
        # A file a process was replaying when it died (its pid is gone) is adopted too.
        orphans += [f for f in self.spill_dir.glob("request_log.*.replaying") if not _alive(f)]
        for f in orphans:
            if f == self.spill_path or f == self.quarantine_path:
                continue
            claimed = f.with_suffix(f".claimed-{os.getpid()}")
            try:
                f.rename(claimed)
            except OSError:
                continue
            with claimed.open("rb") as src, self.spill_path.open("ab") as dst:
                for line in src:
                    dst.write(line)
                    self._spilled_rows += 1
            claimed.unlink()

    async def _replay_spill(self) -> None:
        replaying = self.spill_path.with_suffix(".replaying")
        if not replaying.exists():
            self.spill_path.rename(replaying)
        rows: list[LogRow] = []
        for line in replaying.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                rows.append(_row_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._quarantine(Quarantined(f"unreadable spilled row: {exc}"[:500],
                                             line=line[:10_000].decode(errors="replace")))
        for i in range(0, len(rows), self.batch_size):
            await self._write_or_quarantine(rows[i:i + self.batch_size])
        replaying.unlink()
        self._spilled_rows = 0
        if self.spill_path.exists():  # rows spilled while replaying
            self._spilled_rows = sum(1 for _ in self.spill_path.open("rb"))

    async def close(self, timeout_s: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            pass
        if self._buffer:
            self._spill(len(self._buffer))
            log.warning("request log: %d rows kept in %s for the next start", self._spilled_rows, self.spill_path)
        await self._drop_connection()


def _alive(path: Path) -> bool:
    """Whether the process named in a spill file's name (`request_log.<pid>.<suffix>`) still runs here."""
    try:
        pid = int(path.name.split(".")[1])
    except (IndexError, ValueError):
        return False
    return pid_alive(pid)
