"""Issue 24, defects 14-16: a cap on the messages of one request (a 100,000-message body cost 21 s of CPU
and memory that rose by 330 MB and stayed), request ids that cannot be mistaken for one another in lookups,
and the small ones: a tenant with `/` in its name, `allowed_tiers: []`, a negative `expires_in_s`, /metrics'
content type."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, lookup_request, make_settings

ADMIN = "defects-admin"
H = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def keyed(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    settings = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN},
                             server={"max_messages": 50, "max_content_parts": 60})
    with GatewayThread(settings) as gw:
        yield gw


def chat(messages: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {"model": "smr/simple", "messages": messages, **extra}


def error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err: dict[str, str] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


# ------------------------------------------------------------------ 14: how many messages one request may carry
def test_the_default_cap_refuses_a_huge_message_list_with_a_400_naming_it(gateway: GatewayThread) -> None:
    many = [{"role": "user", "content": f"m{i}"} for i in range(100_000)]
    for path in ("/v1/chat/completions", "/v1/route"):
        err = error(httpx.post(gateway.url + path, json=chat(many), timeout=60), 400)
        assert err["param"] == "messages" and err["code"] == "array_above_max_length"
        assert "2000" in err["message"] and "server.max_messages" in err["message"] and "100000" in err["message"]
    r = httpx.post(gateway.url + "/v1/chat/completions", json=chat(many[:2000]), timeout=60)
    assert r.status_code == 200, r.text[:300]  # the cap itself is served


def test_the_cap_is_the_setting_and_counts_content_parts_and_tools(keyed: GatewayThread) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(51)]
    err = error(httpx.post(keyed.url + "/v1/chat/completions", json=chat(msgs), headers=auth, timeout=30), 400)
    assert "50" in err["message"] and "server.max_messages" in err["message"]
    assert httpx.post(keyed.url + "/v1/chat/completions", json=chat(msgs[:50]), headers=auth,
                      timeout=30).status_code == 200
    parts = [{"type": "text", "text": f"p{i}"} for i in range(61)]
    err = error(httpx.post(keyed.url + "/v1/chat/completions", json=chat([{"role": "user", "content": parts}]),
                           headers=auth, timeout=30), 400)
    assert err["param"] == "messages" and "server.max_content_parts" in err["message"] and "60" in err["message"]
    tool = {"type": "function", "function": {"name": "f"}}
    err = error(httpx.post(keyed.url + "/v1/chat/completions", json=chat(msgs[:1], tools=[tool] * 129),
                           headers=auth, timeout=30), 400)
    assert err["param"] == "tools" and "128" in err["message"]


# ------------------------------------------------------------------ 15: request ids never collide in lookups
def new_key(gw: GatewayThread, tenant: str, **fields: object) -> httpx.Response:
    return httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant, **fields}, headers=H, timeout=10)


def test_a_client_id_copying_another_tenants_id_does_not_hide_it(keyed: GatewayThread) -> None:
    a_tenant, b_tenant = "ids-a-" + secrets.token_hex(3), "ids-b-" + secrets.token_hex(3)
    a, b = new_key(keyed, a_tenant).json()["key"], new_key(keyed, b_tenant).json()["key"]
    first = httpx.post(keyed.url + "/v1/chat/completions", json=chat([{"role": "user", "content": "hi"}]),
                       headers={"Authorization": f"Bearer {a}"}, timeout=30)
    theirs = first.json()["smr"]["request_id"]
    assert lookup_request(keyed, theirs, a).status_code == 200
    copy = httpx.post(keyed.url + "/v1/chat/completions", json=chat([{"role": "user", "content": "hello"}]),
                      headers={"Authorization": f"Bearer {b}", "x-request-id": theirs}, timeout=30)
    assert copy.headers["x-request-id"] == theirs  # echoed, as any sane client id
    mine = copy.json()["smr"]["request_id"]
    assert lookup_request(keyed, mine, b).json()["client_request_id"] == theirs  # B's row is written (and newer)
    admin = lookup_request(keyed, theirs, ADMIN).json()
    assert admin["id"] == theirs and admin["tenant"] == a_tenant  # it was B's row
    assert lookup_request(keyed, theirs, b).json()["id"] == mine  # B finds its own request by the id it sent
    assert lookup_request(keyed, theirs, a).json()["id"] == theirs


@pytest.mark.parametrize("client_id", ["t" * 65, "trace-" + "x" * 122, "span/with/slashes:1+2=3"])
def test_every_client_id_that_is_echoed_can_be_looked_up(keyed: GatewayThread, client_id: str) -> None:
    key = new_key(keyed, "ids-long-" + secrets.token_hex(3)).json()["key"]
    r = httpx.post(keyed.url + "/v1/chat/completions", json=chat([{"role": "user", "content": "hi"}]),
                   headers={"Authorization": f"Bearer {key}", "x-request-id": client_id}, timeout=30)
    assert r.headers["x-request-id"] == client_id
    found = lookup_request(keyed, client_id.replace("/", "%2F"), key)
    assert found.status_code == 200, found.text  # 65-128 characters were 404
    assert found.json()["client_request_id"] == client_id and found.json()["id"] == r.json()["smr"]["request_id"]


# ------------------------------------------------------------------ 16: the small ones
def test_a_tenant_with_a_slash_can_have_limits(keyed: GatewayThread) -> None:
    tenant = f"org-{secrets.token_hex(3)}/team"
    assert new_key(keyed, tenant).status_code == 201
    path = keyed.url + "/v1/tenants/" + tenant.replace("/", "%2F") + "/limits"
    put = httpx.put(path, json={"rate_limit_rpm": 7}, headers=H)
    assert put.status_code == 200, put.text  # it was 404
    got = httpx.get(path, headers=H).json()
    assert got["tenant"] == tenant and got["limits"]["rate_limit_rpm"] == 7
    plain = f"plain-{secrets.token_hex(3)}"
    assert httpx.put(keyed.url + f"/v1/tenants/{plain}/limits", json={"budget_usd": 1}, headers=H).json() == {
        "tenant": plain, "limits": {"budget_usd": 1.0}, "object": "tenant.limits"}
    assert error(httpx.get(keyed.url + f"/v1/tenants/{plain}/other", headers=H), 404)["code"] == "not_found"


def test_an_empty_tier_list_is_refused_not_read_as_all_tiers(keyed: GatewayThread) -> None:
    err = error(new_key(keyed, "tiers-" + secrets.token_hex(3), allowed_tiers=[]), 400)
    assert err["param"] == "allowed_tiers"  # it was stored as null: every tier
    key_id = new_key(keyed, "tiers-" + secrets.token_hex(3), allowed_tiers=["simple"]).json()["id"]
    err = error(httpx.patch(keyed.url + f"/v1/keys/{key_id}", json={"allowed_tiers": []}, headers=H), 400)
    assert err["param"] == "allowed_tiers"
    err = error(httpx.put(keyed.url + "/v1/tenants/tiers-t/limits", json={"allowed_tiers": []}, headers=H), 400)
    assert err["param"] == "allowed_tiers"
    assert httpx.patch(keyed.url + f"/v1/keys/{key_id}", json={"allowed_tiers": None},
                       headers=H).json()["allowed_tiers"] is None  # null still means every tier


@pytest.mark.parametrize("expiry", [{"expires_in_s": -60}, {"expires_in_s": 0},
                                    {"expires_at": "2001-01-01T00:00:00Z"}])
def test_a_key_cannot_be_created_already_expired(keyed: GatewayThread, expiry: dict[str, object]) -> None:
    err = error(new_key(keyed, "expiry-" + secrets.token_hex(3), **expiry), 400)
    assert err["param"] == next(iter(expiry))
    assert new_key(keyed, "expiry-ok", expires_in_s=60).status_code == 201


def test_metrics_names_its_charset_once(gateway: GatewayThread) -> None:
    ctype = httpx.get(gateway.url + "/metrics").headers["content-type"]
    assert ctype.startswith("text/plain; version=0.0.4") and ctype.count("charset") == 1, ctype
