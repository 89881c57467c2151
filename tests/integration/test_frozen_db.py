"""A frozen database (issue 24, defects 9 and 11): Postgres that accepts TCP and never answers (SIGSTOP of a
private embedded server; the shared test server is never stopped).

Defect 9: a write was cancelled at 5 s but then waited on psycopg's cancellation of the query (up to 10 s
more), so `db_up` stayed true about 15 s, and rows sat only in memory all that while: a kill -9 lost them.
A `.replaying` spill file of a killed process was not adopted while its pid was a zombie. Now a write has a
real client deadline, rows not committed within `spill_after_s` go to disk anyway, and a zombie is dead.
Defect 11: a request during an outage waited 1.0 s every 2 s: the key lookup and the tenant-limits lookup
each waited 0.5 s, in series. Now the pool marks the database down when it misses the check's deadline and
every other call fails at once, and a key seen before is served without waiting once the outage is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psutil
import psycopg
import pytest

from gateway.db.log_row import LogRow
from gateway.db.log_writer import LogWriter
from gateway.db.migrate import migrate, migrations_dir
from gateway.db.pool import Pool
from gateway.fakes.server import ThreadedFakes
from gateway.infra.lookups import CachedLookup, SourceDown
from gateway.infra.pids import pid_alive
from gateway.vocab.errors import DatabaseUnavailable
from tests.integration.test_faults import server_processes, signal_all, wait_for
from tests.scratch import embedded_server

CHAT = {"model": "smr/simple", "messages": [{"role": "user", "content": "hi"}]}


def row(tag: str) -> LogRow:
    return LogRow(f"{tag}-{secrets.token_hex(6)}", dt.datetime.now(dt.UTC), "/v1/chat/completions", "miss", 1.0,
                  200, tenant=tag)


@contextlib.contextmanager
def frozen(pgdata: Path) -> Iterator[list[psutil.Process]]:
    """Every process of a private server stopped (TCP still accepted by the kernel), always thawed after."""
    procs = server_processes(pgdata)
    signal_all(procs, signal.SIGSTOP)
    try:
        yield procs
    finally:
        signal_all(procs, signal.SIGCONT)


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A 'server' that accepts connections (the kernel's backlog) and never answers a byte."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield f"postgresql://postgres@127.0.0.1:{s.getsockname()[1]}/x"
    finally:
        s.close()


@contextlib.contextmanager
def zombie() -> Iterator[int]:
    """A child that has exited and not been reaped: `kill(pid, 0)` still succeeds on it."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 20
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.wait(10)


def lines_on_disk(folder: Path) -> int:
    """Rows in the spill files of a folder (whatever their stage: spilled, replaying)."""
    return sum(len((folder / f).read_bytes().splitlines()) for f in os.listdir(folder) if f.startswith("request_log."))


# ---------------------------------------------------------------- the spill file (defect 9)
def test_a_zombie_is_not_alive() -> None:
    with zombie() as pid:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert pid_alive(pid) is False  # it was True: kill(pid, 0) succeeds on a zombie


async def test_a_zombies_replaying_spill_file_is_adopted(pg_url: str, tmp_path: Path) -> None:
    await migrate(pg_url, migrations_dir())
    tag = "zombie-" + secrets.token_hex(3)
    with zombie() as pid:
        (tmp_path / f"request_log.{pid}.replaying").write_bytes(msgspec.json.encode(row(tag)) + b"\n")
        w = LogWriter(pg_url, tmp_path)
        w.start()
        try:
            assert await w.flush()
        finally:
            await w.close()
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM request_log WHERE tenant = %s", (tag,)).fetchone() == (1,)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".replaying")]


async def test_rows_go_to_disk_on_time_while_the_write_hangs(tmp_path: Path) -> None:
    """The write hangs (its deadline is far away): the rows are on disk, fsync'd, after `spill_after_s`,
    before any write has failed. They were only in memory until the write failed."""
    with black_hole() as url:
        w = LogWriter(url, tmp_path, flush_interval_s=0.01, write_timeout_s=60, spill_after_s=0.2)
        for _ in range(5):
            w.record(row("hang"))
        w.start()
        try:
            deadline = time.monotonic() + 20
            while lines_on_disk(tmp_path) < 5:
                assert time.monotonic() < deadline, "the rows never reached the disk"
                await asyncio.sleep(0.02)
            assert w.stats.flush_errors == 0 and w.stats.spilled == 5  # on time, not on failure
            assert w.stats.buffered == 5  # the batch is still being written: it may commit yet
        finally:
            await w.close(timeout_s=0.2)
    # The write never came back: the rows are on disk once each, for the next start to write.
    assert lines_on_disk(tmp_path) == 5


async def test_a_write_to_a_frozen_database_is_abandoned_at_its_deadline(tmp_path: Path) -> None:
    """psycopg answers a cancellation by asking the server to cancel and waiting up to 10 s: the writer's
    5 s limit became about 15 s. Here the limit is 0.5 s and the guard 4 s (the old code took over 10)."""
    server = embedded_server()
    try:
        url = server.url("postgres")
        await migrate(url, migrations_dir())
        w = LogWriter(url, tmp_path, write_timeout_s=0.5)
        w.record(row("warm"))
        assert await w.flush()
        w.record(row("frozen"))
        with frozen(server.pgdata):
            async with asyncio.timeout(4):
                assert await w.flush() is False
            assert w.stats.db_up is False and w.stats.spilled == 1
        assert await w.flush()  # thawed: the spilled row is written, once
        with psycopg.connect(url) as c:
            assert c.execute("SELECT count(*) FROM request_log WHERE tenant = 'frozen'").fetchone() == (1,)
        await w.close()
    finally:
        server.cleanup()


# ---------------------------------------------------------------- the lookup wait (defect 11)
async def test_a_key_seen_before_is_served_without_waiting_once_the_source_failed() -> None:
    hang = asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await hang.wait()  # a frozen database: never answers
        return "new"

    async def fast() -> str:
        return "old"

    async def fails() -> str:
        raise OSError("away")

    lookup: CachedLookup[str, str] = CachedLookup(ttl_s=0.0, timeout_s=0.05, retry_s=0.0)
    with pytest.raises(SourceDown):  # a key never seen waits (at most timeout_s), then fails
        await lookup.get("unseen", slow)
    assert calls == 1
    # ttl 0: every call finds its entry stale; a long timeout, so that a wait on the source would show.
    lookup2: CachedLookup[str, str] = CachedLookup(ttl_s=0.0, timeout_s=60, retry_s=0.0)
    assert await lookup2.get("seen", fast) == "old"
    assert await lookup2.get("seen", fails) == "old"  # the source failed: served from memory
    async with asyncio.timeout(5):  # the old code waited for the source here, up to timeout_s (60 s)
        assert await lookup2.get("seen", slow) == "old"
    for _ in range(500):  # asked again, in the background
        if calls == 2:
            break
        await asyncio.sleep(0.01)
    assert calls == 2
    assert await lookup2.get("seen", slow) == "old" and calls == 2  # one background read at a time
    hang.set()  # the source answers the background read: what it read is kept
    for _ in range(500):
        if await lookup2.get("seen", fails) == "new":
            break
        await asyncio.sleep(0.01)
    assert await lookup2.get("seen", fails) == "new"


async def test_once_the_pool_finds_the_database_frozen_other_calls_do_not_wait() -> None:
    """The key lookup and the tenant lookup of one request each waited 0.5 s on a frozen database. Now the
    first call that meets the freeze marks the pool down and the next call fails without a checkout."""
    server = embedded_server()
    try:
        pool = Pool(server.url("postgres"), max_size=2, timeout=30, check_timeout_s=0.3, retry_s=60)
        await pool.open()
        checkouts = 0
        getconn = pool.getconn

        async def counted(timeout: float | None = None) -> psycopg.AsyncConnection:
            nonlocal checkouts
            checkouts += 1
            return await getconn(timeout)

        pool.getconn = counted  # type: ignore[method-assign]
        try:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            with frozen(server.pgdata):
                async with asyncio.timeout(10):  # the pool's own timeout is 30 s: the check's deadline ends it
                    with pytest.raises(DatabaseUnavailable):
                        async with pool.connection() as conn:
                            await conn.execute("SELECT 1")
                before = checkouts
                with pytest.raises(DatabaseUnavailable):
                    async with pool.connection():
                        pass
                assert checkouts == before and not pool.up  # failed at once: no checkout, no wait
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await pool.close()
    finally:
        server.cleanup()


# ---------------------------------------------------------------- the gateway (both defects)
@pytest.fixture()
def private_pg() -> Iterator[object]:
    server = embedded_server()
    try:
        yield server
    finally:
        server.cleanup()


def test_health_says_the_database_is_down_within_the_bound_and_requests_are_answered(
        fakes: ThreadedFakes, private_pg: object, tmp_path: Path) -> None:
    from tests.helpers import GatewayThread, make_settings

    server = private_pg
    url = server.url("postgres")  # type: ignore[attr-defined]
    settings = make_settings(fakes, db_url=url, log={"requests": True, "flush_interval_s": 0.05,
                                                     "spill_dir": str(tmp_path / "spill")})
    with GatewayThread(settings) as gw:
        sent = sum(httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10).status_code == 200
                   for _ in range(5))
        wait_for(url, sent)
        with frozen(server.pgdata):  # type: ignore[attr-defined]
            started = time.monotonic()
            down_after = None
            while time.monotonic() - started < 20:
                r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
                assert r.status_code == 200  # answered all along
                sent += 1
                if httpx.get(gw.url + "/health", timeout=10).json()["request_log"]["db_up"] is False:
                    down_after = time.monotonic() - started
                    break
                time.sleep(0.1)
        # 5 s (the write's deadline) and the machine's slack; it was about 15 s.
        assert down_after is not None and down_after < 9, down_after
        total, distinct = wait_for(url, sent)
    assert (total, distinct) == (sent, sent)


def test_a_kill_9_during_a_freeze_loses_no_row_older_than_the_spill_window(
        fakes: ThreadedFakes, private_pg: object, tmp_path: Path) -> None:
    """200 rows answered while the database is frozen, the gateway killed with -9 several seconds later, the
    database thawed and a gateway started again while the killed one is still a zombie: every row is there,
    once. All of them were lost: they sat in memory while the write hung."""
    from tests.integration.test_cli import CLEAN_ENV, running

    server = private_pg
    url = server.url("postgres")  # type: ignore[attr-defined]
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[auth]\nenabled = false\n[cache]\nenabled = false\n[database]\nurl = "{url}"\n'
                   f'[log]\nspill_dir = "{tmp_path / "spill"}"\n[tiers]\nsimple = ["local"]\nmedium = ["local"]\n'
                   f'complex = ["local"]\n[routing]\nbaseline = "local"\n[[backends]]\nname = "local"\n'
                   f'provider = "ollama"\nmodel = "granite4:350m"\nbase_url = "{fakes.ollama_url}"\n')
    env = {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp_path / "data")}
    sent = 0
    with running("serve", "--config", str(cfg), env=env) as (gw, proc):
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                sent += client.post(gw + "/v1/chat/completions", json=CHAT).status_code == 200
            wait_for(url, sent)
            with frozen(server.pgdata):  # type: ignore[attr-defined]
                for _ in range(200):
                    sent += client.post(gw + "/v1/chat/completions", json=CHAT).status_code == 200
                time.sleep(4.0)  # past the spill window (2 s) and its check; the write still hangs (5 s)
                proc.send_signal(signal.SIGKILL)
                deadline = time.time() + 10
                while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
                    time.sleep(0.05)
        assert sent == 210
        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE  # not reaped yet
        with running("serve", "--config", str(cfg), env=env):
            total, distinct = wait_for(url, sent, timeout=60)
        proc.wait(10)
    assert (total, distinct) == (sent, sent)
