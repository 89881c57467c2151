"""Routing users can see (issue 14, first part): the `smr` explanation through the real openai SDK (JSON
and stream), GET /v1/requests/{id} scoped to the key's tenant, and the POST /v1/route dry run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, lookup_request, make_settings

ADMIN = "explain-admin"
H = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    with GatewayThread(make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN})) as g:
        yield g


def key(gw: GatewayThread, tenant: str) -> str:
    return str(httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant}, headers=H).json()["key"])


def test_the_openai_sdk_sees_why_and_the_log_keeps_it(gw: GatewayThread) -> None:
    tenant = "explain-" + secrets.token_hex(3)
    k = key(gw, tenant)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=k, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Design a fault-tolerant distributed queue"}])
    completion = raw.parse()
    smr = completion.smr  # type: ignore[attr-defined]  # an unknown field: the SDK keeps it
    assert smr["route"] == "auto" and smr["tier"] == "complex" and smr["classifier"] == "heuristic"
    assert smr["model"] == completion.model and smr["cost_usd"] > 0 and smr["reasons"]
    assert raw.headers["x-request-id"] == smr["request_id"]
    stream = client.chat.completions.create(model="smr/simple", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "hello"}])
    chunks = list(stream)
    assert chunks[0].smr["route"] == "forced"  # type: ignore[attr-defined]
    assert chunks[-1].usage is not None and chunks[-1].smr["cost_usd"] >= 0  # type: ignore[attr-defined]
    got = lookup_request(gw, smr["request_id"], k)
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == 200 and body["smr"] == smr and body["tenant"] == tenant
    other = key(gw, "someone-else-" + secrets.token_hex(3))
    theirs = httpx.get(gw.url + f"/v1/requests/{smr['request_id']}", headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404  # another tenant's key sees nothing (the row is written by now)
    assert httpx.get(gw.url + f"/v1/requests/{smr['request_id']}", headers=H).status_code == 200  # the admin does
    assert httpx.get(gw.url + "/v1/requests/req_x%01", headers=H).status_code == 404


def test_dry_run_decides_and_estimates_without_calling(gw: GatewayThread, fakes: ThreadedFakes) -> None:
    k = key(gw, "dry-" + secrets.token_hex(3))
    before = fakes.gemini.stats.requests + fakes.ollama.stats.requests
    r = httpx.post(gw.url + "/v1/route", headers={"Authorization": f"Bearer {k}"},
                   json={"model": "auto", "max_tokens": 300,
                         "messages": [{"role": "user", "content": "Design a fault-tolerant distributed queue"}]})
    assert r.status_code == 200
    dry = r.json()
    assert dry["object"] == "route" and dry["smr"]["tier"] == "complex" and dry["chain"] == ["pro"]
    assert dry["estimate"]["completion_tokens"] == 300 and dry["estimate"]["cost_usd"] > 0
    assert fakes.gemini.stats.requests + fakes.ollama.stats.requests == before
    bad = httpx.post(gw.url + "/v1/route", headers={"Authorization": f"Bearer {k}"}, json={"messages": []})
    assert bad.status_code == 400
    assert httpx.post(gw.url + "/v1/route", json={"messages": [{"role": "user", "content": "x"}]}).status_code == 401
