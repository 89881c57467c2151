"""Issue 25, a newcomer's first hour: money printed as float noise (`0.00037499999999999995`), every CLI
command claiming to have started an embedded PostgreSQL, `smr doctor` failing right after `make demo`,
and `smr cache stats` refusing to run beside the demo's embedded Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway.db import embedded
from gateway.db.migrate import migrate, migrations_dir
from tests.helpers import GatewayThread
from tests.integration.test_cli import CLEAN_ENV, ROOT, running

NOISE = ("0.00037499999999999995", "0.00030000000000000003")
STARTED = "started an embedded PostgreSQL"


def smr_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


# ---------------------------------------------------------------- 1. money
def test_usage_prints_money_in_json_and_dollars_on_the_command_line(gateway: GatewayThread, pg_url: str) -> None:
    asyncio.run(migrate(pg_url, migrations_dir(None)))
    tenant = "default"  # the open gateway's callers' tenant; the rows sit alone in an hour of 2001
    hour = f"2001-01-{secrets.randbelow(28) + 1:02d}T{secrets.randbelow(24):02d}:00:00+00:00"
    with psycopg.connect(pg_url, autocommit=True) as c:
        for cost, base in ((0.00037499999999999995, 0.0001), (0.0, 0.0002)):  # sums a float adds up as noise
            c.execute("INSERT INTO request_log (request_id, ts, tenant, endpoint, cache_status, latency_ms, "
                      "http_status, cost_usd, baseline_cost_usd, savings_usd, shadow_cost_usd) "
                      "VALUES (%s, %s::timestamptz + interval '1 minute', %s, 'chat', 'miss', 5, 200, %s, %s, %s, %s)",
                      (f"req_{secrets.token_hex(8)}", hour, tenant, cost, base, base, base))
    window = {"group_by": "all", "from": hour, "to": hour.replace(":00:00+", ":59:00+")}
    for view in ("served", "shadow"):
        r = httpx.get(gateway.url + "/v1/usage", params={**window, "view": view}, timeout=10)
        assert r.status_code == 200 and not any(n in r.text for n in NOISE), r.text
        group = r.json()["data"][0]
        assert group["cost_usd"] == 0.000375 and "0.000375," in r.text
        assert group["baseline_cost_usd" if view == "served" else "shadow_cost_usd"] == 0.0003
    env = {**CLEAN_ENV, "DATABASE_URL": pg_url, "SMR_ADMIN_KEY": "money-admin"}
    when = ("--group-by", "all", "--tenant", tenant, "--from", window["from"], "--to", window["to"])
    out = smr_run("usage", *when, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "$0.000375" in out.stdout and "$0.0003 " in out.stdout and not any(n in out.stdout for n in NOISE)
    shadow = smr_run("usage", *when, "--view", "shadow", env=env)
    assert "$0.000375" in shadow.stdout and not any(n in shadow.stdout for n in NOISE), shadow.stdout


# ---------------------------------------------------------------- 2. the embedded PostgreSQL warning
class _FakeServer:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata

    def url(self) -> str:
        return "postgresql://postgres:@/postgres"


def test_the_started_warning_only_when_this_call_started_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(embedded, "EmbeddedPostgres", _FakeServer)
    caplog.set_level(logging.INFO, "gateway.db")
    embedded.start_embedded(tmp_path)  # nothing runs there: this call starts it
    assert STARTED in caplog.text
    caplog.clear()
    # A server runs there already (the demo's): its lock file names a live process, ready.
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "postmaster.pid").write_text(
        f"{os.getpid()}\n{tmp_path / 'pgdata'}\n1700000000\n5432\n{tmp_path / 'pgdata'}\nlocalhost\n"
        "  5432001         0\nready   \n")
    embedded.start_embedded(tmp_path)
    assert STARTED not in caplog.text and "already running" in caplog.text


# ---------------------------------------------------------------- 2-4. beside a running `smr demo`
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    """`make demo` as a newcomer runs it: no DATABASE_URL, no REDIS_URL, no SMR_ADMIN_KEY."""
    env = {k: v for k, v in {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp_path_factory.mktemp("demo") / "data")}.items()
           if k != "REDIS_URL"}
    with running("demo", env=env) as (url, proc):
        assert proc.stdout is not None
        admin = ""
        while True:
            line = proc.stdout.readline()
            assert line, "the demo never printed its API key"
            if "admin key (made up" in line:
                admin = line.rsplit(":", 1)[1].strip()
            if "API key for the demo tenant:" in line:
                key = line.rsplit(":", 1)[1].strip()
                break
        r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                       json={"model": "auto", "messages": [{"role": "user", "content": "Explain Python decorators"}]})
        assert r.status_code == 200, r.text
        yield url, admin, env


def test_cli_commands_beside_the_demo_do_not_claim_to_start_postgres(demo: tuple[str, str, dict[str, str]]) -> None:
    _, admin, env = demo
    for args in (("usage", "--group-by", "all"), ("migrate",), ("keys", "list")):
        out = smr_run(*args, env={**env, "SMR_ADMIN_KEY": admin})
        assert out.returncode == 0, out.stdout + out.stderr
        assert STARTED not in out.stdout + out.stderr, args
    # They work on the database straight: the admin key (the HTTP API's) is not needed.
    bare = smr_run("usage", "--group-by", "all", env=env)
    assert bare.returncode == 0 and "$" in bare.stdout and STARTED not in bare.stderr, bare.stdout + bare.stderr


def test_doctor_right_after_the_demo_reports_simulated_upstreams(demo: tuple[str, str, dict[str, str]]) -> None:
    url, admin, env = demo
    out = smr_run("doctor", env=env)
    print(out.stdout)
    assert "Traceback" not in out.stdout + out.stderr and STARTED not in out.stderr
    text = out.stdout
    assert "warn admin key: SMR_ADMIN_KEY is not set" in text and "fix: export SMR_ADMIN_KEY=" in text
    assert "ok   database: the embedded PostgreSQL" in text and "ok   redis:" in text
    assert "ok   backend gemini-2.5-pro: simulated by the demo" in text
    assert f"ok   gateway: smr demo (SIMULATED upstreams) at {url}" in text
    assert "FAIL" not in text and out.returncode == 0
    keyed = smr_run("doctor", env={**env, "SMR_ADMIN_KEY": admin})
    assert f"ok   admin key: accepted by {url}" in keyed.stdout and keyed.returncode == 0, keyed.stdout
    wrong = smr_run("doctor", env={**env, "SMR_ADMIN_KEY": "not-the-demos"})
    assert "FAIL admin key:" in wrong.stdout and wrong.returncode == 1, wrong.stdout


def test_cache_stats_reaches_the_demos_embedded_redis(demo: tuple[str, str, dict[str, str]]) -> None:
    _, _, env = demo
    out = smr_run("cache", "stats", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the embedded one the running gateway started" in out.stdout
    assert int(out.stdout.split("exact entries:")[1].split()[0]) >= 1  # the demo's one answer is cached


def test_cache_stats_without_a_demo_says_how_to_point_it(tmp_path: Path) -> None:
    env = {k: v for k, v in {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp_path)}.items() if k != "REDIS_URL"}
    out = smr_run("cache", "stats", env=env)
    assert out.returncode == 2 and "REDIS_URL" in out.stdout and "SMR_DATA_DIR" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not os.listdir(tmp_path) or "pgdata" not in os.listdir(tmp_path)  # no server started for it
