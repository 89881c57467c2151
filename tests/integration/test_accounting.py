"""Accounting against real Postgres: migrations, API keys, the request log, usage, an outage."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.db.migrate import migrate, migrations_dir, pending
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import Backend
from tests.helpers import FAST, GatewayThread, make_settings, rows, wait_for_rows
from tests.scratch import ScratchDatabase, embedded_server

ADMIN = "admin-test-secret"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def secured(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    auth = {"enabled": True, "admin_key": ADMIN, "key_cache_ttl_s": 0.3}
    settings = make_settings(fakes, db_url=pg_url, auth=auth)
    with GatewayThread(settings) as gw:
        yield gw


def create_key(gw: GatewayThread, **body: object) -> dict[str, object]:
    r = httpx.post(gw.url + "/v1/keys", json={"name": "app", "tenant": "acme", **body}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def chat(
    gw: GatewayThread, key: str | None, model: str = "smr/simple", header: str = "authorization"
) -> httpx.Response:
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"X-API-Key": key}
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


# ---------------------------------------------------------------- migrations
async def test_migrations_are_idempotent_and_safe_under_concurrent_starters() -> None:
    db = ScratchDatabase()
    try:
        first, second = await asyncio.gather(migrate(db.url), migrate(db.url))
        names = [p.name for p in pending(migrations_dir())]
        assert sorted(first + second) == names, "each migration applied exactly once across both starters"
        assert await migrate(db.url) == []
        recorded = rows(db.url, "SELECT name FROM schema_migrations ORDER BY name")
        assert [r[0] for r in recorded] == names
    finally:
        db.drop()


# ---------------------------------------------------------------- keys
def test_key_format_and_storage(secured: GatewayThread, pg_url: str) -> None:
    made = create_key(secured, name="fmt")
    key = str(made["key"])
    assert key.startswith("smr_") and len(key) >= 4 + 43
    assert made["prefix"] == key[:12] and made["tenant"] == "acme"
    stored = rows(pg_url, "SELECT key_hash, prefix FROM api_keys WHERE id = %s", (made["id"],))[0]
    assert len(bytes(stored[0])) == 32 and key.encode() not in bytes(stored[0])  # type: ignore[arg-type]
    dumped = rows(pg_url, "SELECT row_to_json(k)::text FROM api_keys k")
    assert all(key not in r[0] for r in dumped), "the raw key is never stored"  # type: ignore[operator]
    listed = httpx.get(secured.url + "/v1/keys", headers=ADMIN_H).json()["data"]
    assert any(k["id"] == made["id"] for k in listed)
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_bearer_and_x_api_key_both_work(secured: GatewayThread) -> None:
    key = str(create_key(secured)["key"])
    assert chat(secured, key).status_code == 200
    assert chat(secured, key, header="x-api-key").status_code == 200
    client = openai.OpenAI(base_url=secured.url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(model="smr/simple", messages=[{"role": "user", "content": "x"}]).choices


@pytest.mark.parametrize("case", ["missing", "unknown", "malformed-header"])
def test_401_cases(secured: GatewayThread, case: str) -> None:
    if case == "missing":
        r = chat(secured, None)
    elif case == "unknown":
        r = chat(secured, "smr_" + "x" * 43)
    else:
        r = httpx.post(secured.url + "/v1/chat/completions", headers={"Authorization": "Basic abc"},
                       json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=secured.url + "/v1", api_key="smr_nope", max_retries=0).models.list()


def test_expired_key_is_401(secured: GatewayThread) -> None:
    # (A key cannot be created already expired: that is a 400, tests/integration/test_small_defects.py.)
    key = str(create_key(secured, expires_in_s=1)["key"])
    time.sleep(1.5)
    r = chat(secured, key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_expired"


def test_revocation_takes_effect_within_the_cache_ttl(secured: GatewayThread) -> None:
    made = create_key(secured)
    key = str(made["key"])
    assert chat(secured, key).status_code == 200
    r = httpx.delete(f"{secured.url}/v1/keys/{made['id']}", headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["revoked_at"]
    time.sleep(0.4)  # key_cache_ttl_s = 0.3
    r = chat(secured, key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
    unknown = "00000000-0000-0000-0000-000000000000"
    assert httpx.delete(f"{secured.url}/v1/keys/{unknown}", headers=ADMIN_H).status_code == 404


def test_rotation_keeps_the_old_key_for_the_grace_period(secured: GatewayThread) -> None:
    made = create_key(secured, name="rotating")
    old = str(made["key"])
    r = httpx.post(f"{secured.url}/v1/keys/{made['id']}/rotate", json={"grace_s": 1.0}, headers=ADMIN_H)
    assert r.status_code == 201
    new = r.json()
    assert new["key"] != old and new["rotated_from"] == made["id"] and new["tenant"] == "acme"
    assert chat(secured, old).status_code == 200 and chat(secured, str(new["key"])).status_code == 200
    time.sleep(1.4)
    assert chat(secured, old).status_code == 401
    assert chat(secured, str(new["key"])).status_code == 200


def test_admin_endpoints_need_the_admin_key(secured: GatewayThread) -> None:
    key = str(create_key(secured)["key"])
    assert httpx.get(secured.url + "/v1/keys").status_code == 401
    r = httpx.get(secured.url + "/v1/keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    bad = httpx.post(secured.url + "/v1/keys", json={"name": "x"}, headers=ADMIN_H)
    assert bad.status_code == 400


def test_allowed_tiers_are_enforced(secured: GatewayThread) -> None:
    key = str(create_key(secured, allowed_tiers=["simple"])["key"])
    assert chat(secured, key, "smr/simple").status_code == 200
    r = chat(secured, key, "smr/complex")
    assert r.status_code == 403


# ---------------------------------------------------------------- request log
def test_log_rows_for_success_error_and_stream(secured: GatewayThread, pg_url: str) -> None:
    made = create_key(secured, tenant="logcheck")
    key = str(made["key"])
    assert chat(secured, key, "smr/medium").status_code == 200
    assert chat(secured, key, "no-such-model").status_code == 404
    client = openai.OpenAI(base_url=secured.url + "/v1", api_key=key, max_retries=0)
    list(client.chat.completions.create(model="smr/complex", stream=True,
                                        messages=[{"role": "user", "content": "stream me please"}]))
    assert chat(secured, "smr_wrong").status_code == 401
    wait_for_rows(pg_url, "tenant = 'logcheck'", 3)
    got = rows(pg_url, "SELECT endpoint, requested_model, tier, backend, provider, http_status, stream, "
                       "prompt_tokens, completion_tokens, cost_usd, baseline_cost_usd, savings_usd, error_type, "
                       "cache_status, key_id::text, ttft_ms, prompt FROM request_log WHERE tenant = 'logcheck' "
                       "ORDER BY ts")
    ok, missing, streamed = got
    assert ok[:8] == ("/v1/chat/completions", "smr/medium", "medium", "flash", "gemini", 200, False, 1)
    assert ok[8] > 0 and ok[9] > 0 and ok[10] > ok[9] and abs(ok[11] - (ok[10] - ok[9])) < 1e-12  # type: ignore[operator]
    assert ok[13] == "bypass"  # this gateway runs without a cache
    assert ok[14] == made["id"] and ok[16] is None  # no prompt text by default
    assert missing[5] == 404 and missing[12] == "model_not_found" and missing[9] == 0
    assert streamed[2:7] == ("complex", "pro", "gemini", 200, True)
    assert streamed[7] > 0 and streamed[8] > 0 and streamed[15] is not None  # type: ignore[operator]
    wait_for_rows(pg_url, "http_status = 401", 1)


def test_fallback_attempts_are_logged(fakes: ThreadedFakes, pg_url: str) -> None:
    dead = Backend(name="dead", provider="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k",
                   timeouts=FAST)
    settings = make_settings(fakes, [dead], {"simple": ["dead", "local"], "medium": ["flash"], "complex": ["pro"]},
                             db_url=pg_url)
    with GatewayThread(settings) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"x-smr-force-tier": "simple"},
                       json={"user": "fallback-test", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        wait_for_rows(pg_url, "fallback_errors LIKE 'dead:%%'", 1)
    got = rows(pg_url, "SELECT attempts, backend FROM request_log WHERE fallback_errors LIKE 'dead:%%'")
    assert got[-1] == (2, "local")


def test_missing_upstream_usage_is_estimated_and_marked(fakes: ThreadedFakes, gateway: GatewayThread,
                                                       pg_url: str) -> None:
    from gateway.fakes.common import Behaviour

    fakes.openai.behaviour = Behaviour(omit_usage=True)
    r = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "oai", "user": "estimate-me", "messages": [{"role": "user", "content": "count these words please"}]})
    assert r.status_code == 200
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    wait_for_rows(pg_url, "usage_estimated AND backend = 'oai'", 1)
    got = rows(pg_url, "SELECT prompt_tokens, completion_tokens, cost_usd FROM request_log "
                       "WHERE usage_estimated AND backend = 'oai'")
    assert got[-1][0] > 0 and got[-1][2] > 0  # type: ignore[operator]


# ---------------------------------------------------------------- usage
def test_usage_is_scoped_to_the_tenant(secured: GatewayThread, pg_url: str) -> None:
    # Tenants of their own: other test files log to the same scratch database.
    ta, tb = f"tenant-a-{secrets.token_hex(3)}", f"tenant-b-{secrets.token_hex(3)}"
    a = str(create_key(secured, tenant=ta)["key"])
    b = str(create_key(secured, tenant=tb)["key"])
    for _ in range(3):
        assert chat(secured, a, "smr/simple").status_code == 200
    assert chat(secured, b, "smr/complex").status_code == 200
    wait_for_rows(pg_url, f"tenant IN ('{ta}', '{tb}')", 4)
    mine = httpx.get(secured.url + "/v1/usage?group_by=tenant", headers={"Authorization": f"Bearer {a}"}).json()
    assert [g["group"] for g in mine["data"]] == [ta] and mine["data"][0]["requests"] == 3
    # Asking for another tenant's usage does not widen a normal key's view.
    other = httpx.get(secured.url + f"/v1/usage?group_by=tenant&tenant={tb}",
                      headers={"Authorization": f"Bearer {a}"}).json()
    assert [g["group"] for g in other["data"]] == [ta]
    everyone = httpx.get(secured.url + "/v1/usage?group_by=tenant", headers=ADMIN_H).json()
    groups = {g["group"] for g in everyone["data"]}
    assert {ta, tb} <= groups
    by_tier = httpx.get(secured.url + f"/v1/usage?group_by=tier&tenant={tb}", headers=ADMIN_H).json()["data"]
    assert [(g["group"], g["requests"], g["savings_usd"]) for g in by_tier] == [("complex", 1, 0.0)]


def test_usage_bad_parameters(secured: GatewayThread) -> None:
    for q in ("group_by=planet", "from=yesterday"):
        r = httpx.get(f"{secured.url}/v1/usage?{q}", headers=ADMIN_H)
        assert r.status_code == 400 and r.json()["error"]["param"] in ("group_by", "from")
    assert httpx.get(secured.url + "/v1/usage").status_code == 401


def test_usage_time_window(secured: GatewayThread) -> None:
    r = httpx.get(secured.url + "/v1/usage?from=2000-01-01&to=2000-01-02&group_by=day", headers=ADMIN_H).json()
    assert r["data"] == []


# ---------------------------------------------------------------- the seed's savings table
def test_seed_savings_table(fakes: ThreadedFakes) -> None:
    """Local at 0.5 % of Pro's prices and Flash at 18 %: the seed's 99.5 % / 82 % / 0 % savings."""
    pro_in, pro_out = 1.25, 10.0
    tiers = {"simple": ["local"], "medium": ["flash"], "complex": ["pro"]}
    settings = make_settings(fakes, tiers=tiers)
    priced = []
    for b in settings.backends:
        share = {"local": 0.005, "flash": 0.18, "pro": 1.0}.get(b.name)
        if share is not None:
            b = Backend(name=b.name, provider=b.provider, model=b.model, base_url=b.base_url, api_key=b.api_key,
                        input_price=pro_in * share, output_price=pro_out * share, timeouts=b.timeouts)
        priced.append(b)
    import msgspec
    settings = msgspec.structs.replace(settings, backends=priced)
    table = {"Translate to Spanish: good morning": ("simple", 99.5), "Explain Python decorators": ("medium", 82.0),
             "Design a banking API": ("complex", 0.0)}
    with GatewayThread(settings) as gw:
        for prompt, (tier, pct) in table.items():
            r = httpx.post(gw.url + "/v1/complete", json={"prompt": prompt}).json()
            assert r["difficulty_tag"] == tier, prompt
            baseline = r["estimated_cost"] + r["estimated_savings"]
            assert abs(100 * r["estimated_savings"] / baseline - pct) < 0.01
            assert abs(r["estimated_savings"] - baseline * pct / 100) < 0.001  # within a tenth of a cent


# ---------------------------------------------------------------- a Postgres outage
def test_postgres_outage_mid_traffic_loses_no_row(fakes: ThreadedFakes) -> None:
    server = embedded_server()
    try:
        url = server.url("postgres")
        settings = make_settings(fakes, db_url=url, log={"requests": True, "flush_interval_s": 0.05,
                                                         "buffer_max": 20, "batch_size": 10,
                                                         "spill_dir": str(server.pgdata.parent / "spill")})
        with GatewayThread(settings) as gw:
            sent = 0

            def burst(n: int) -> None:
                nonlocal sent
                for _ in range(n):
                    assert chat(gw, None, "smr/simple").status_code == 200
                    sent += 1

            burst(15)
            wait_for_rows(url, "true", 15)
            server.stop()
            burst(60)  # more than buffer_max: the oldest rows spill to disk
            health = httpx.get(gw.url + "/health").json()
            assert health["dependencies"]["database"].startswith("unreachable") and health["status"] == "degraded"
            assert health["request_log"]["spilled"] > 0 and health["request_log"]["db_up"] is False
            server.start()
            burst(5)
            wait_for_rows(url, "true", sent, timeout=20)
            health = httpx.get(gw.url + "/health").json()
            assert health["request_log"]["dropped"] == 0 and health["request_log"]["db_up"] is True
        total = rows(url, "SELECT count(*), count(DISTINCT request_id) FROM request_log")[0]
        assert total == (sent, sent) == (80, 80)
    finally:
        server.cleanup()


def test_rows_are_flushed_on_shutdown(fakes: ThreadedFakes, pg_url: str) -> None:
    settings = make_settings(fakes, db_url=pg_url, log={"requests": True, "flush_interval_s": 60.0,
                                                         "spill_dir": "/tmp/smr-spill-shutdown"})
    with GatewayThread(settings) as gw:
        for _ in range(7):
            httpx.post(gw.url + "/v1/chat/completions",
                       json={"model": "smr/simple", "messages": [{"role": "user", "content": "shutdown-flush"}],
                             "user": "x"})
        before = rows(pg_url, "SELECT count(*) FROM request_log WHERE ts > now() - interval '1 minute' "
                              "AND requested_model = 'smr/simple' AND endpoint = '/v1/chat/completions'")[0][0]
    after = rows(pg_url, "SELECT count(*) FROM request_log WHERE ts > now() - interval '1 minute' "
                         "AND requested_model = 'smr/simple' AND endpoint = '/v1/chat/completions'")[0][0]
    assert after - before >= 7
