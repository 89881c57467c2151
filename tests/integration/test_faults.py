"""Faults of the request log's database under traffic (issue 13): Postgres frozen (SIGSTOP of all its
processes, longer than the writer's time limit) and killed (kill -9, then started again). Every client
request is answered, and once the database is back every request has its one row: none lost, none twice."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import psycopg
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, make_settings
from tests.scratch import embedded_server


def server_processes(pgdata: object) -> list[psutil.Process]:
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])  # type: ignore[operator]
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


def count(url: str) -> tuple[int, int]:
    with psycopg.connect(url, connect_timeout=3) as c:
        row = c.execute("SELECT count(*), count(DISTINCT request_id) FROM request_log").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def wait_for(url: str, n: int, timeout: float = 30) -> tuple[int, int]:
    deadline = time.time() + timeout
    got = (0, 0)
    while time.time() < deadline:
        try:
            got = count(url)
        except psycopg.OperationalError:
            got = (0, 0)
        if got[0] >= n:
            return got
        time.sleep(0.1)
    return got


@pytest.fixture()
def logged(fakes: ThreadedFakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, object]]:
    server = embedded_server()
    try:
        url = server.url("postgres")
        settings = make_settings(fakes, db_url=url, log={"requests": True, "flush_interval_s": 0.05,
                                                         "spill_dir": str(tmp_path_factory.mktemp("spill"))})
        with GatewayThread(settings) as gw:
            yield gw, server
    finally:
        server.cleanup()


def burst(gw: GatewayThread, n: int) -> int:
    ok = 0
    for _ in range(n):
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=10,
                       json={"model": "smr/simple", "messages": [{"role": "user", "content": "hi"}]})
        ok += r.status_code == 200
    return ok


def test_postgres_frozen_past_the_write_limit_loses_no_row(logged: tuple[GatewayThread, object]) -> None:
    gw, server = logged
    url = server.url("postgres")  # type: ignore[attr-defined]
    sent = burst(gw, 20)
    wait_for(url, sent)
    procs = server_processes(server.pgdata)  # type: ignore[attr-defined]
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    try:
        started = time.time()
        while time.time() - started < 7:  # longer than the writer's 5 s limit on one write
            sent += burst(gw, 5)
            time.sleep(0.2)
        health = httpx.get(gw.url + "/health", timeout=5).json()
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
    assert health["dependencies"]["database"].startswith("unreachable") and health["status"] == "degraded"
    sent += burst(gw, 5)
    total, distinct = wait_for(url, sent)
    assert sent >= 60 and (total, distinct) == (sent, sent)


def test_postgres_killed_and_restarted_loses_no_row(logged: tuple[GatewayThread, object]) -> None:
    gw, server = logged
    url = server.url("postgres")  # type: ignore[attr-defined]
    sent = burst(gw, 20)
    wait_for(url, sent)
    for p in server_processes(server.pgdata):  # type: ignore[attr-defined]
        p.send_signal(signal.SIGKILL)
    sent += burst(gw, 30)
    assert httpx.get(gw.url + "/health", timeout=5).json()["request_log"]["db_up"] is False
    server.start()  # type: ignore[attr-defined]
    sent += burst(gw, 5)
    total, distinct = wait_for(url, sent)
    assert sent == 55 and (total, distinct) == (sent, sent)


def test_redis_killed_mid_traffic_keeps_serving_and_logging(fakes: ThreadedFakes, pg_url: str,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """Redis (cache and limit counters) killed: requests of a rate-limited key are still answered (the
    limits fail open by default), /health says so, and every request keeps its log row."""
    from gateway.cache.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(tmp_path_factory.mktemp("redis-kill"))
    redis_server.start()
    admin = {"Authorization": "Bearer faults-admin"}
    settings = make_settings(fakes, db_url=pg_url, redis={"url": redis_server.url},
                             auth={"enabled": True, "admin_key": "faults-admin"},
                             cache={"enabled": True, "semantic": False, "lookup_timeout_s": 0.1},
                             limits={"redis_timeout_s": 0.1})
    try:
        with GatewayThread(settings) as gw:
            tenant = "redis-kill-" + str(time.time_ns())
            key = httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant, "rate_limit_rpm": 1000},
                             headers=admin).json()["key"]

            def one(i: int) -> int:
                return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  timeout=10, json={"model": "smr/simple",
                                                    "messages": [{"role": "user", "content": f"q{i}"}]}).status_code

            before = [one(i) for i in range(10)]
            assert redis_server.proc is not None
            redis_server.proc.kill()
            after = [one(i) for i in range(10, 30)]
            health = httpx.get(gw.url + "/health", timeout=5).json()
        assert before == [200] * 10 and after == [200] * 20
        assert health["limits"]["redis_up"] is False and health["dependencies"]["redis"] == "unreachable"
        assert health["limits"]["served_unlimited"] >= 20 and health["status"] == "degraded"
        deadline = time.time() + 10
        while time.time() < deadline:
            with psycopg.connect(pg_url) as c:
                n = c.execute("SELECT count(*) FROM request_log WHERE tenant = %s", (tenant,)).fetchone()
            if n and n[0] >= 30:
                break
            time.sleep(0.1)
        assert n is not None and n[0] == 30
    finally:
        redis_server.stop()
