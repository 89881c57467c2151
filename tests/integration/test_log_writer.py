"""The request-log writer against real Postgres: no row can stop the log, and an outage loses nothing
that reached the disk (issue 13, defects 1 and 9)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from gateway.db.log_row import LogRow
from gateway.db.log_writer import LogWriter
from gateway.db.migrate import migrate, migrations_dir
from gateway.fakes.server import free_port
from tests.helpers import GatewayThread


@pytest.fixture(scope="module")
def migrated(pg_url: str) -> str:
    asyncio.run(migrate(pg_url, migrations_dir()))
    return pg_url


def row(tag: str, **fields: object) -> LogRow:
    return LogRow(f"{tag}-{secrets.token_hex(6)}", dt.datetime.now(dt.UTC), "/v1/chat/completions", "miss", 1.0, 200,
                  tenant=tag, **fields)  # type: ignore[arg-type]


def logged(url: str, tenant: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as c:
        return c.execute("SELECT requested_model, prompt, http_status FROM request_log WHERE tenant = %s "
                         "ORDER BY id", (tenant,)).fetchall()


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


async def test_refused_rows_are_quarantined_and_never_block_the_rest(migrated: str, tmp_path: Path) -> None:
    tag = "poison-" + secrets.token_hex(3)
    w = LogWriter(migrated, tmp_path, batch_size=100)
    w.record(row(tag, requested_model="ok-before"))
    w.record(row(tag, requested_model="nul\x00model"))             # Postgres text refuses NUL: cleaned
    w.record(row(tag, requested_model="m" * 1_000_000))            # a 1 MB model string: cut
    w.record(row(tag, requested_model="lone", prompt="a\ud800b"))  # an unpaired surrogate: replaced
    w.record(row(tag, requested_model="overflow", prompt_tokens=2**40))  # out of range for integer: refused
    assert await w.flush()
    got = logged(migrated, tag)
    assert [(m[:12] if isinstance(m, str) else m) for m, _, _ in got] == \
        ["ok-before", "nulmodel", "mmmmmmmmmmmm", "lone"]
    assert len(str(got[2][0])) == 256 and got[3][1] == "a?b"
    assert w.stats.quarantined == 1
    (item,) = [json.loads(line) for line in w.quarantine_path.read_text().splitlines()]
    assert item["row"]["requested_model"] == "overflow" and "NumericValueOutOfRange" in item["error"]
    w.record(row(tag, requested_model="ok-after"))
    assert await w.flush()
    assert logged(migrated, tag)[-1][0] == "ok-after"
    await w.close()


async def test_spill_files_left_by_dead_processes_are_adopted_even_mid_replay(migrated: str,
                                                                             tmp_path: Path) -> None:
    tag = "orphan-" + secrets.token_hex(3)
    enc = msgspec.json.encode
    (tmp_path / f"request_log.{dead_pid()}.replaying").write_bytes(
        enc(row(tag, requested_model="was-replaying")) + b"\n" + b'{"not": "a row"}\n')
    (tmp_path / "request_log.4242424242.jsonl").write_bytes(enc(row(tag, requested_model="was-spilled")) + b"\n")
    w = LogWriter(migrated, tmp_path)
    w.start()
    assert await w.flush()
    assert sorted(str(m) for m, _, _ in logged(migrated, tag)) == ["was-replaying", "was-spilled"]
    assert w.stats.quarantined == 1 and "unreadable spilled row" in w.quarantine_path.read_text()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".replaying")]
    await w.close()


async def test_a_failed_flush_puts_the_buffer_on_disk_at_once(tmp_path: Path) -> None:
    """A crash during an outage then loses only what came in since the last attempt."""
    w = LogWriter(f"postgresql://postgres@127.0.0.1:{free_port()}/x", tmp_path, buffer_max=20_000)
    for i in range(5):
        w.record(row("down", requested_model=f"m{i}"))
    assert not await w.flush()
    assert w.stats.buffered == 0 and w.stats.spilled == 5 and not w.stats.db_up
    assert len(w.spill_path.read_text().splitlines()) == 5
    await w.close(timeout_s=0.5)


def test_a_nul_byte_in_model_does_not_stop_the_request_log(gateway: GatewayThread, pg_url: str) -> None:
    tag = "nul-" + secrets.token_hex(3)
    bad = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "gpt\x00x", "user": tag, "messages": [{"role": "user", "content": "hi"}]})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"
    good = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "smr/simple", "messages": [{"role": "user", "content": f"after the NUL {tag}"}]})
    assert good.status_code == 200
    import time

    deadline = time.time() + 10
    while time.time() < deadline:
        with psycopg.connect(pg_url) as c:
            n = c.execute("SELECT count(*) FROM request_log WHERE requested_model IN ('gptx', 'smr/simple') "
                          "AND ts > now() - interval '1 minute'").fetchone()
        if n and n[0] >= 2:
            break
        time.sleep(0.05)
    health = httpx.get(gateway.url + "/health").json()
    assert health["request_log"]["db_up"] is True and health["request_log"]["quarantined"] == 0
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM request_log WHERE requested_model = 'gptx'").fetchone()[0] >= 1  # type: ignore[index]


async def test_a_spill_file_named_with_this_process_pid_is_written_at_start(migrated: str, tmp_path: Path) -> None:
    """A pid is reused (a container's gateway is pid 1 after every restart): the file a killed process left
    under this process's own name was skipped as 'ours' and never written until the next outage."""
    tag = "own-pid-" + secrets.token_hex(3)
    enc = msgspec.json.encode
    (tmp_path / f"request_log.{os.getpid()}.jsonl").write_bytes(enc(row(tag, requested_model="spilled")) + b"\n")
    (tmp_path / f"request_log.{os.getpid()}.replaying").write_bytes(enc(row(tag, requested_model="replaying")) + b"\n")
    w = LogWriter(migrated, tmp_path)
    w.start()
    try:
        assert await w.flush()
        assert await w.flush()  # the .replaying file first, then the spill file
    finally:
        await w.close()
    assert sorted(str(m) for m, _, _ in logged(migrated, tag)) == ["replaying", "spilled"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("request_log.") and "quarantine" not in f]
