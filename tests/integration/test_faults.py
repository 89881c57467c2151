"""Faults of the request log's database under traffic (issue 13): Postgres frozen (SIGSTOP of all its
processes, longer than the writer's time limit) and killed (kill -9, then started again). Every client
request is answered, and once the database is back every request has its one row: none lost, none twice."""

from __future__ import annotations

import contextlib
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


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    """A backend that was already ending (a connection just closed) may be gone by now: that is fine."""
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


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
    signal_all(procs, signal.SIGSTOP)
    try:
        started = time.time()
        while time.time() - started < 7:  # longer than the writer's 5 s limit on one write
            sent += burst(gw, 5)
            time.sleep(0.2)
        health = httpx.get(gw.url + "/health", timeout=5).json()
    finally:
        signal_all(procs, signal.SIGCONT)
    assert health["dependencies"]["database"].startswith("unreachable") and health["status"] == "degraded"
    sent += burst(gw, 5)
    total, distinct = wait_for(url, sent)
    assert sent >= 60 and (total, distinct) == (sent, sent)


def test_postgres_killed_and_restarted_loses_no_row(logged: tuple[GatewayThread, object]) -> None:
    gw, server = logged
    url = server.url("postgres")  # type: ignore[attr-defined]
    sent = burst(gw, 20)
    wait_for(url, sent)
    signal_all(server_processes(server.pgdata), signal.SIGKILL)  # type: ignore[attr-defined]
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


UPSTREAM_FAULTS = {  # fault of the only backend -> what the client gets (JSON, then stream)
    "refused": (None, 502, 502),
    "429": ({"fail_status": 429}, 502, 502),
    "500": ({"fail_status": 500}, 502, 502),
    "timeout": ({"hang": True}, 504, 504),
    "malformed": ({"malformed": True}, 502, 502),
    "cut mid-stream": ({"cut_stream_after": 1}, 200, 200),
}


@pytest.mark.parametrize("fault", list(UPSTREAM_FAULTS))
def test_upstream_faults_give_the_right_answer_and_one_row_each(fakes: ThreadedFakes, pg_url: str,
                                                                fault: str) -> None:
    """Each upstream fault with the request log on: the client outcome, and exactly one row a request."""
    from gateway.fakes.common import Behaviour
    from gateway.fakes.openai_fake import FakeOpenAI
    from gateway.fakes.server import free_port
    from gateway.vocab.settings import Backend, Timeouts

    behaviour, json_status, stream_status = UPSTREAM_FAULTS[fault]
    fake = FakeOpenAI()
    url = fakes.add(fake) + "/v1" if behaviour is not None else f"http://127.0.0.1:{free_port()}/v1"
    if behaviour is not None:
        fake.behaviour = Behaviour(**behaviour)  # type: ignore[arg-type]
    only = Backend(name="only", provider="openai", model="m", base_url=url, api_key="k",
                   timeouts=Timeouts(connect_s=0.5, first_token_s=0.5, total_s=1.0))
    tenant_user = "fault-" + fault.replace(" ", "-") + "-" + str(time.time_ns())
    settings = make_settings(fakes, [only], {"simple": ["only"], "medium": ["only"], "complex": ["only"]},
                             db_url=pg_url, routing={"baseline": "pro", "breaker_failures": 1000})
    with GatewayThread(settings) as gw:  # (it migrates the database on start)
        with psycopg.connect(pg_url) as c:
            first_id = c.execute("SELECT coalesce(max(id), 0) FROM request_log").fetchone()[0]  # type: ignore[index]
        got = []
        for stream in (False, True, False, True):
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=10, json={
                "model": "only", "stream": stream, "user": tenant_user,
                "messages": [{"role": "user", "content": f"{tenant_user} question"}]})
            got.append((r.status_code, r.text))
    assert [s for s, _ in got] == [json_status, stream_status] * 2, got
    for status, text in got:
        if status >= 400:
            assert '"error"' in text and "Traceback" not in text
    if fault == "cut mid-stream":
        assert '"error"' in got[1][1] and "[DONE]" not in got[1][1]  # the stream ends with an error event
    deadline = time.time() + 10
    rows: list[tuple[object, ...]] = []
    while time.time() < deadline:
        with psycopg.connect(pg_url) as c:
            rows = c.execute("SELECT http_status, stream FROM request_log WHERE requested_model = 'only' "
                             "AND id > %s ORDER BY id", (first_id,)).fetchall()
        if len(rows) >= 4:
            break
        time.sleep(0.1)
    logged = [s for s, _ in got]
    if fault == "cut mid-stream":  # the client got 200 and an error event; the row says how it ended
        logged = [200, 502, 200, 502]
    assert rows == [(st, stream) for st, stream in zip(logged, (False, True, False, True), strict=True)]


def test_rows_of_an_outage_survive_a_gateway_kill(fakes: ThreadedFakes,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 13, defect 9: Postgres down, then kill -9 of the gateway. The rows were buffered in memory
    and lost; now each failed flush puts them on disk, so what is older than one retry interval
    (log.flush_interval_s + 1 s) survives, and the next gateway writes it."""
    from tests.integration.test_cli import CLEAN_ENV, running

    tmp = tmp_path_factory.mktemp("crash")
    pg = embedded_server()
    try:
        url = pg.url("postgres")
        cfg = tmp / "gw.toml"
        cfg.write_text(f'[auth]\nenabled = false\n[cache]\nenabled = false\n[database]\nurl = "{url}"\n'
                       f'[log]\nspill_dir = "{tmp / "spill"}"\n[tiers]\nsimple = ["local"]\nmedium = ["local"]\n'
                       f'complex = ["local"]\n[routing]\nbaseline = "local"\n[[backends]]\nname = "local"\n'
                       f'provider = "ollama"\nmodel = "granite4:350m"\nbase_url = "{fakes.ollama_url}"\n')
        env = {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp / "data")}
        sent = 0
        with running("serve", "--config", str(cfg), env=env) as (gw, proc):
            def send(n: int) -> None:
                nonlocal sent
                for _ in range(n):
                    r = httpx.post(gw + "/v1/chat/completions", timeout=10,
                                   json={"model": "smr/simple", "messages": [{"role": "user", "content": "hi"}]})
                    sent += r.status_code == 200
            send(10)
            wait_for(url, 10)
            pg.stop()
            send(40)
            time.sleep(2.0)  # past one retry interval: every row is on disk now
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert sent == 50
        assert list((tmp / "spill").glob("request_log.*.jsonl")), "the rows went to the spill file"
        pg.start()
        with running("serve", "--config", str(cfg), env=env):
            total, distinct = wait_for(url, sent)
        assert (total, distinct) == (sent, sent)
    finally:
        pg.cleanup()
