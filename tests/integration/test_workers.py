"""`smr serve --workers N` (issue 27): N processes on one port, sharing the Redis and PostgreSQL the parent
starts once; a key's rate limit holds across them, `/metrics` on any worker shows every worker's series
(the event-loop lag among them), and SIGTERM to the parent leaves no process behind."""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.server import ThreadedFakes
from tests.integration.test_cli import CLEAN_ENV, ROOT, running

ADMIN = "workers-admin"
H = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = """
[auth]
enabled = true
[cache]
enabled = false
{database}
[log]
flush_interval_s = 0.05
spill_dir = "{spill}"
[routing]
baseline = "local"
classifiers = ["heuristic"]
[tiers]
simple = ["local"]
medium = ["local"]
complex = ["local"]
[[backends]]
name = "local"
provider = "ollama"
model = "granite4:350m"
base_url = "{ollama}"
"""


def lib_dir(redis_stack: EmbeddedRedis) -> str:
    """The libssl1.1 the session's own Redis fetched: the gateway's embedded Redis reuses it."""
    return str(redis_stack.base / "libssl11" / "usr" / "lib" / "x86_64-linux-gnu")


def family(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


def mentioning(text: str) -> list[psutil.Process]:
    """Processes whose command line names `text` (the data folder: the embedded servers')."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in p.info["cmdline"] or ()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def stop_and_check(proc: psutil.Process, watched: list[psutil.Process], data_dir: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except psutil.TimeoutExpired:  # not a graceful stop: kill the whole family so nothing is left, then fail
        for p in [*family(proc), *mentioning(str(data_dir))]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(watched, timeout=10)
        raise AssertionError("smr serve --workers did not stop within 60 s of SIGTERM") from None
    _, alive = psutil.wait_procs(watched, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    assert mentioning(str(data_dir)) == []


@pytest.fixture(scope="module")
def served(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, psutil.Process, Path]]:
    tmp = tmp_path_factory.mktemp("workers")
    cfg = tmp / "gw.toml"
    cfg.write_text(CONFIG.format(database=f'[database]\nurl = "{pg_url}"', spill=tmp / "spill",
                                 ollama=fakes.ollama_url))
    env = {**CLEAN_ENV, "SMR_ADMIN_KEY": ADMIN, "SMR_DATA_DIR": str(tmp / "data"),
           "SMR_LIBSSL11_DIR": lib_dir(redis_stack)}
    with running("serve", "--config", str(cfg), "--workers", "2", env=env) as (url, proc):
        yield url, psutil.Process(proc.pid), tmp / "data"


def chat(url: str, key: str) -> httpx.Response:
    # A new connection each time: the kernel spreads connections over the workers' sockets.
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": "smr/simple", "messages": [{"role": "user", "content": "hello there"}]})


def requests_by_worker(url: str) -> dict[str, int]:
    text = httpx.get(url + "/metrics", headers=H).text
    counts: dict[str, int] = {}
    for m in re.finditer(r'^smr_requests_total\{worker="(\d+)",endpoint="/v1/chat/completions"[^}]*\} (\d+)$',
                         text, re.M):
        counts[m[1]] = counts.get(m[1], 0) + int(m[2])
    return counts


def test_two_workers_serve_and_hold_one_rate_limit(served: tuple[str, psutil.Process, Path]) -> None:
    url, proc, _ = served
    assert len([p for p in proc.children() if p.cmdline()[:1] == proc.cmdline()[:1]]) == 2  # two workers
    r = httpx.post(url + "/v1/keys", json={"name": "app", "tenant": "w-" + secrets.token_hex(4),
                                           "rate_limit_rpm": 10}, headers=H)
    assert r.status_code == 201, r.text
    statuses = [chat(url, r.json()["key"]).status_code for _ in range(30)]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    time.sleep(1.5)  # each worker's metrics snapshot is at most a second old
    by_worker = requests_by_worker(url)
    assert set(by_worker) == {"0", "1"} and sum(by_worker.values()) >= 30, by_worker  # both answered


def test_metrics_show_each_workers_event_loop_lag(served: tuple[str, psutil.Process, Path]) -> None:
    url, _, _ = served
    time.sleep(1.2)
    text = httpx.get(url + "/metrics", headers=H).text
    assert "# TYPE smr_event_loop_lag_seconds histogram" in text
    assert text.count("# TYPE smr_event_loop_lag_seconds histogram") == 1
    for w in ("0", "1"):
        count = re.search(rf'^smr_event_loop_lag_seconds_count{{worker="{w}"}} (\d+)$', text, re.M)
        assert count is not None and int(count[1]) > 0, text
        assert f'smr_event_loop_lag_seconds_bucket{{worker="{w}",le="+Inf"}}' in text
    assert 'smr_gc_pause_seconds_bucket{worker="0",generation="0",le="+Inf"}' in text
    frozen = re.findall(r'^smr_gc_frozen_objects{worker="\d"} (\d+)$', text, re.M)
    assert len(frozen) == 2 and all(int(n) > 0 for n in frozen)  # server.tune_gc: start-up objects frozen


def test_a_port_another_server_holds_is_refused_not_shared(served: tuple[str, psutil.Process, Path],
                                                          tmp_path: Path) -> None:
    url, _, _ = served
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(database="", spill=tmp_path / "spill", ollama="http://127.0.0.1:9"))
    port = url.rsplit(":", 1)[1]
    env = {**CLEAN_ENV, "SMR_ADMIN_KEY": ADMIN, "SMR_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--workers", "2",
                          "--port", port], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "data").exists()  # refused before any embedded server was started


def test_sigterm_stops_workers_and_the_embedded_redis(served: tuple[str, psutil.Process, Path]) -> None:
    url, proc, data_dir = served
    watched = family(proc)
    servers = [p for p in watched if p.name().startswith("redis-server")]  # it renames itself: not by folder
    assert len(servers) == 1, watched  # started once, by the parent
    stop_and_check(proc, watched, data_dir)
    assert not servers[0].is_running()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)


def test_embedded_postgres_is_started_once_and_stopped_on_sigterm(fakes: ThreadedFakes, redis_stack: EmbeddedRedis,
                                                                  tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(database="", spill=tmp_path / "spill", ollama=fakes.ollama_url))
    data = tmp_path / "data"
    env = {**CLEAN_ENV, "SMR_ADMIN_KEY": ADMIN, "SMR_DATA_DIR": str(data), "SMR_LIBSSL11_DIR": lib_dir(redis_stack)}
    with running("serve", "--config", str(cfg), "--workers", "2", env=env) as (url, popen):
        proc = psutil.Process(popen.pid)
        r = httpx.post(url + "/v1/keys", json={"name": "app", "tenant": "pg"}, headers=H)
        assert r.status_code == 201, r.text
        assert chat(url, r.json()["key"]).status_code == 200
        servers = [p for p in mentioning(str(data)) if "postgres" in p.name()]
        # A backend just forked for a connection still carries the server's command line until it renames
        # itself: only the roots are servers (one for both workers).
        postmasters = [p for p in servers if p.ppid() not in {q.pid for q in servers}]
        assert len(postmasters) == 1, servers
        stop_and_check(proc, [*family(proc), *postmasters], data)
