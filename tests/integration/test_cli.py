"""`smr serve` and `smr demo` as a user runs them: real processes on real ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from gateway.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[2]
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY", "OLLAMA_BASE_URL", "SMR_CONFIG")}


def smr(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env or CLEAN_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = smr(*args, "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"smr did not start: {proc.stdout.read() if proc.stdout else ''}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_config_fails_at_start_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\n')
    proc = smr("serve", "--config", str(bad))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "server.port" in lines[0] and "Traceback" not in out


def test_serve_without_keys_starts_and_answers_503_naming_the_backend() -> None:
    env = {**CLEAN_ENV, "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    with running("serve", env=env) as (url, _):
        r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503
        err = r.json()["error"]
        assert "gemini-2.5-pro" in err["message"] and "GOOGLE_API_KEY is not set" in err["message"]
        h = httpx.get(url + "/health").json()
        assert h["status"] == "degraded"
        assert h["providers"]["gemini-2.5-flash"]["configured"] is False


def test_demo_is_labelled_simulated_and_routes() -> None:
    with running("demo") as (url, proc):
        r = httpx.post(url + "/v1/complete", json={"prompt": "Translate hello to Spanish"}, timeout=10).json()
        assert r["model_used"] == "granite4:350m (simulated)" and r["difficulty_tag"] == "simple"
        h = httpx.get(url + "/health").json()
        assert h["simulated"] is True and all(p["simulated"] for p in h["providers"].values())
        client = openai.OpenAI(base_url=url + "/v1", api_key="demo", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="auto", stream=True, messages=[{"role": "user", "content": "Design a banking API"}]))
        assert chunks[0].model == "gemini-2.5-pro"
    out = proc.stdout.read() if proc.stdout else ""
    assert "SIMULATED" in out
