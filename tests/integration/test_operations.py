"""Operations (issue 16) with `smr serve` as a user runs it: JSON log lines with the request id (taken from
the client when it sends one), x-request-id on every response, and the seed's environment variables."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest

from gateway.fakes.server import ThreadedFakes
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import read_settings
from tests.integration.test_cli import CLEAN_ENV, running

ADMIN = "ops-admin-" + secrets.token_hex(4)


def test_json_log_lines_carry_the_request_id_and_never_the_key(fakes: ThreadedFakes, pg_url: str,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "smr.toml"
    config.write_text("[cache]\nenabled = false\n")
    env = {**CLEAN_ENV, "SMR_ADMIN_KEY": ADMIN, "DATABASE_URL": pg_url, "SMR_LOG_FORMAT": "json",
           "OLLAMA_BASE_URL": fakes.ollama_url, "GEMINI_BASE_URL": fakes.gemini_url, "GOOGLE_API_KEY": "k"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    prompt = "Translate the word cheese into French " + secrets.token_hex(4)
    with running("serve", "--config", str(config), env=env) as (url, proc):
        made = httpx.post(url + "/v1/keys", headers=admin, json={"name": "ops", "tenant": "ops-tenant"}).json()
        key = made["key"]
        auth = {"Authorization": f"Bearer {key}"}
        body = {"model": "smr/simple", "messages": [{"role": "user", "content": prompt}]}
        mine = httpx.post(url + "/v1/chat/completions", headers={**auth, "x-request-id": "trace-abc.123"}, json=body,
                          timeout=20)
        assert mine.status_code == 200 and mine.headers["x-request-id"] == "trace-abc.123"
        ours = mine.json()["smr"]["request_id"]
        odd = httpx.post(url + "/v1/chat/completions", headers={**auth, "x-request-id": "bad id; drop"}, json=body,
                         timeout=20)
        assert odd.status_code == 200 and odd.headers["x-request-id"] == odd.json()["smr"]["request_id"]
        for r in (httpx.get(url + "/nowhere"), httpx.get(url + "/health"), httpx.post(url + "/v1/chat/completions",
                                                                                       json=body)):
            assert r.headers["x-request-id"].startswith("req_"), r.status_code
        found = httpx.get(url + "/v1/requests/trace-abc.123", headers=auth)
        for _ in range(50):
            if found.status_code == 200:
                break
            found = httpx.get(url + "/v1/requests/trace-abc.123", headers=auth)
        assert found.status_code == 200 and found.json()["id"] == ours
        assert found.json()["client_request_id"] == "trace-abc.123"
    out = proc.stdout.read() if proc.stdout else ""
    lines = [line for line in out.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "gateway.access"]
    (line,) = [r for r in access if r.get("client_request_id") == "trace-abc.123"]
    assert line["request_id"] == ours and line["tenant"] == "ops-tenant" and line["key_prefix"] == made["prefix"]
    assert line["route"] == "/v1/chat/completions" and line["tier"] == "simple" and line["status"] == 200
    assert line["model"] == "granite4:350m" and line["latency_ms"] > 0 and "cost_usd" in line
    assert any(r["status"] == 401 for r in access)  # refused requests are logged too
    assert key not in out and ADMIN not in out and prompt not in out  # no key, no prompt (log.prompts is off)


def test_the_seed_settings_work_as_environment_variables() -> None:
    s = read_settings(None, {"USE_LLM_ROUTER": "true", "USE_SEMANTIC_CACHE": "0", "CACHE_TTL_SECONDS": "120"})
    assert s.routing.classifiers[0] == "llm" and s.cache.semantic is False and s.cache.ttl_s == 120
    off = read_settings(None, {"USE_LLM_ROUTER": "no"})
    assert "llm" not in off.routing.classifiers and off.routing.classifiers
    assert read_settings(None, {"SMR_LOG_FORMAT": "JSON"}).log.format == "json"
    traced = read_settings(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert traced.tracing.otlp_endpoint == "http://collector:4318"
    for bad in ({"USE_LLM_ROUTER": "maybe"}, {"CACHE_TTL_SECONDS": "an hour"}, {"SMR_LOG_FORMAT": "xml"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            read_settings(None, bad)
