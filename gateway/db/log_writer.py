"""The request log, written off the request path.

`record()` only appends to an in-memory buffer. A background task flushes batches in one statement, the
batch sent as one JSON array (encoded by msgspec, read back by `jsonb_to_recordset`): `INSERT ... ON CONFLICT
(request_id) DO NOTHING`, so a batch retried after a lost commit, or a row both committed and spilled, is
written once. (It was COPY into a staging table, then INSERT from it: five round trips and a Python call per
row, several times the CPU per row.) A write has a client-side deadline (`write_timeout_s`): a
frozen database fails it in time, its connection abandoned, and `db_up` turns false. A row not committed
`spill_after_s` after `record()` is appended to a JSON-lines spill file and fsync'd (a kill -9 loses at most
that window), as is the buffer past `buffer_max`. Spilled rows are written before newer ones once Postgres
answers; a spill file left by a dead process (a zombie is dead) is taken over at start.

No row can stop the log: text is cleaned (NUL bytes and unpaired surrogates removed, long fields cut), and
a batch refused for its content is written again row by row, each refused row set aside with its error in
`request_log.quarantine.jsonl` beside the spill files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import msgspec
import psycopg

from gateway.db.log_row import COLUMN_TYPES, COLUMNS, LogRow, insert_statement, json_arrays
from gateway.infra.aio import within
from gateway.infra.pids import pid_alive

log = logging.getLogger("gateway.log_writer")


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


_TEXT_AT = tuple((i, f, _MAX_CHARS.get(f, _DEFAULT_MAX_CHARS)) for i, f in enumerate(COLUMNS) if f in _TEXT_FIELDS)


def clean_row(row: LogRow) -> LogRow:
    """The row with every text field as Postgres accepts it and within its length."""
    values = msgspec.structs.astuple(row)
    changes: dict[str, str] = {}
    for i, f, limit in _TEXT_AT:
        v = values[i]
        if v is not None and (len(v) > limit or "\x00" in v or "\\u0000" in v or not v.isascii()):
            cleaned = _clean_text(v, limit)
            if cleaned != v:
                changes[f] = cleaned
    return msgspec.structs.replace(row, **changes) if changes else row


class LogWriter:
    def __init__(self, url: str, spill_dir: Path, *, batch_size: int = 1000, flush_interval_s: float = 0.25,
                 buffer_max: int = 20_000, retry_s: float = 1.0, write_timeout_s: float = 5.0,
                 spill_after_s: float = 2.0) -> None:
        self.url, self.batch_size, self.flush_interval_s = url, batch_size, flush_interval_s
        self.buffer_max, self.retry_s, self.spill_dir = buffer_max, retry_s, spill_dir
        # A slower write (a frozen database) fails; a row not committed `spill_after_s` after `record()` is spilled.
        self.write_timeout_s, self.spill_after_s = write_timeout_s, spill_after_s
        self.spill_path = spill_dir / f"request_log.{os.getpid()}.jsonl"
        self.quarantine_path = spill_dir / "request_log.quarantine.jsonl"
        self._buffer: deque[tuple[float, LogRow]] = deque()  # (accepted at, monotonic; row)
        self._inflight: list[LogRow] = []  # the batch being written, accepted at `_inflight_since`
        self._inflight_since = 0.0
        self._inflight_on_disk = False  # spilled while its write hung: not put back if the write fails
        self._stats = WriterStats()
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None
        self._insert = ""  # the batch insert, built from the table's column types on connecting
        self._tasks: list[asyncio.Task[None]] = []
        self._spilled_rows = 0  # rows in the spill file not yet written

    # ------------------------------------------------------------ request path
    def record(self, row: LogRow) -> None:
        """Never blocks, never raises: the request does not wait on the database."""
        self._buffer.append((time.monotonic(), row))
        if len(self._buffer) > self.buffer_max:
            self._spill_buffer(self.buffer_max // 2)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def stats(self) -> WriterStats:
        s = self._stats
        return WriterStats(s.written, len(self._buffer) + len(self._inflight), s.spilled, s.dropped,
                           s.flush_errors, s.db_up, s.quarantined)

    # ------------------------------------------------------------ background
    def start(self) -> None:
        self._adopt_orphan_spills()
        self._tasks = [asyncio.create_task(self._run(), name="request-log-writer"),
                       asyncio.create_task(self._keep_on_disk(), name="request-log-spill-on-time")]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            ok = await self.flush()
            if not ok:
                await asyncio.sleep(self.retry_s)

    async def _keep_on_disk(self) -> None:  # beside `_run`, which may be stuck in a write
        while True:
            await asyncio.sleep(max(self.spill_after_s / 4, 0.01))
            self.spill_overdue()

    def spill_overdue(self, now: float | None = None) -> int:
        """Put every row held only in memory on disk if the oldest came `spill_after_s` ago or more (the batch
        being written too: should it commit after all, its replay inserts nothing). Returns how many."""
        cutoff = (time.monotonic() if now is None else now) - self.spill_after_s
        moved = 0
        if self._inflight and not self._inflight_on_disk and self._inflight_since <= cutoff:
            if self._append(self._inflight):
                self._inflight_on_disk = True
                moved += len(self._inflight)
        if self._buffer and self._buffer[0][0] <= cutoff:
            n = len(self._buffer)
            self._spill_buffer(n)
            moved += n
        return moved

    async def flush(self) -> bool:
        """Write spilled rows, then buffered ones. False when Postgres could not be reached in time."""
        try:
            if self._spilled_rows:
                await self._replay_spill()
            while self._buffer:
                items = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._inflight, self._inflight_since = [r for _, r in items], items[0][0]
                self._inflight_on_disk = False
                try:
                    await self._write_or_quarantine(self._inflight)
                except BaseException:
                    if not self._inflight_on_disk:
                        self._buffer.extendleft(reversed(items))
                    raise
                finally:
                    self._inflight = []
        except (psycopg.Error, OSError) as exc:  # OSError: TimeoutError (a frozen database) included
            self._stats.flush_errors += 1
            if self._stats.db_up:
                log.warning("request log: cannot write to Postgres (%s); rows wait in %s",
                            type(exc).__name__, self.spill_path)
            self._stats.db_up = False
            await self._drop_connection()
            # While the database is away, rows go to disk at every attempt (not once memory is full).
            if self._buffer:
                self._spill_buffer(len(self._buffer))
            return False
        if not self._stats.db_up:
            log.warning("request log: Postgres is back; backlog written")
        self._stats.db_up = True
        return True

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or not self._insert:
            # autocommit: a statement is atomic by itself (no BEGIN and COMMIT round trips). Held before the
            # column types are read, so that a failure there drops (closes) it as any other.
            self._insert = ""
            self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=3, autocommit=True)
            cur = await self._conn.execute(COLUMN_TYPES)
            self._insert = insert_statement({name: kind for name, kind in await cur.fetchall()})
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await within(conn.close(), 0.5)

    async def _write(self, rows: list[LogRow]) -> None:
        async def attempt() -> int:
            conn = await self._connection()
            inserted = 0
            for batch in await json_arrays(rows):
                cur = await conn.execute(self._insert, (batch,))
                inserted += max(cur.rowcount, 0)
            return inserted

        try:
            # `within`, not `asyncio.timeout`: psycopg answers a cancellation by asking the server to cancel
            # and waiting for it (up to 10 s more on a frozen server); here the caller gets its answer now.
            inserted = await within(attempt(), self.write_timeout_s)
        except TimeoutError:
            self._conn = None  # abandoned, not closed: closing would wait on the frozen server too
            raise
        self._stats.written += inserted  # rows already there (a retried or replayed batch) are not counted

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
    def _spill_buffer(self, count: int) -> None:
        items = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        self._append([r for _, r in items])

    def _append(self, rows: list[LogRow]) -> bool:
        """Append rows to this process's spill file and fsync it (they survive a kill -9 and a power cut)."""
        try:
            _append_synced(self.spill_dir, self.spill_path, (_encoder.encode(clean_row(r)) + b"\n" for r in rows))
        except OSError as exc:
            self._stats.dropped += len(rows)
            log.error("request log: could not spill %d rows to %s: %s", len(rows), self.spill_path, exc)
            return False
        self._stats.spilled += len(rows)
        self._spilled_rows += len(rows)
        return True

    def _adopt_orphan_spills(self) -> None:
        """Spill files left by earlier processes are taken over (rename is atomic: one replica wins)."""
        if not self.spill_dir.is_dir():
            return
        own_replaying = self.spill_path.with_suffix(".replaying")
        for own in (self.spill_path, own_replaying):  # a pid reused (a container's pid 1 after a restart)
            if own.exists():
                self._spilled_rows += _lines(own)
        orphans = list(self.spill_dir.glob("request_log.*.jsonl"))
        # A file a process was replaying, or claiming, when it died (its pid gone or a zombie) is adopted too.
        orphans += [f for f in self.spill_dir.glob("request_log.*.replaying") if not _alive(f)]
        orphans += [f for f in self.spill_dir.glob("request_log.*.claimed-*") if not _alive(f, claimed=True)]
        for f in orphans:
            if f in (self.spill_path, own_replaying, self.quarantine_path):
                continue
            claimed = f.with_suffix(f".claimed-{os.getpid()}")
            try:
                f.rename(claimed)
                # A process killed mid-append leaves a last line without its newline: it gets one here.
                lines = [line if line.endswith(b"\n") else line + b"\n"
                         for line in claimed.read_bytes().splitlines(keepends=True)]
                _append_synced(self.spill_dir, self.spill_path, lines)
            except OSError as exc:
                log.warning("request log: could not take over %s: %s", f, exc)
                continue
            self._spilled_rows += len(lines)
            claimed.unlink()

    async def _replay_spill(self) -> None:
        replaying = self.spill_path.with_suffix(".replaying")
        if not replaying.exists():
            try:
                self.spill_path.rename(replaying)
            except FileNotFoundError:  # taken over by another process meanwhile: it writes those rows
                self._spilled_rows = 0
                return
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
        self._spilled_rows = _lines(self.spill_path) if self.spill_path.exists() else 0  # spilled meanwhile

    async def close(self, timeout_s: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            pass
        if self._buffer:
            self._spill_buffer(len(self._buffer))
        if self._spilled_rows:
            log.warning("request log: %d rows kept in %s for the next start", self._spilled_rows, self.spill_dir)
        await self._drop_connection()


def _append_synced(folder: Path, path: Path, lines: Iterable[bytes]) -> None:
    """Append and fsync; a file this creates also has its folder fsync'd, or a power cut can lose the file's
    name (and every row in it) even though its contents reached the disk."""
    folder.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("ab") as f:
        f.write(b"".join(lines))
        f.flush()
        os.fsync(f.fileno())
    if new:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _alive(path: Path, claimed: bool = False) -> bool:
    """Whether the process a spill file names still runs here: `request_log.<pid>.<suffix>`'s, or for a file
    being taken over (`request_log.<pid>.claimed-<pid>`, `claimed`), the one taking it over."""
    try:
        pid = int(path.name.rsplit("-", 1)[1] if claimed else path.name.split(".")[1])
    except (IndexError, ValueError):
        return False
    return pid_alive(pid)
