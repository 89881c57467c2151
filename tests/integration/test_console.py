"""The admin console (issue 28): the API features it reads (each key's spend, the backends listing, a logged
request's prompt), the dashboard's defects, and the console itself in Debian's chromium driven by Playwright:
a key created with a budget in the page, used from the openai SDK until its budget refuses, its spend and
the refusal seen in the page, rotated and revoked; a request's detail opened from the table; names and
prompts that are HTML shown as text. Screenshots go to tests/artifacts/ (SMR_TEST_ARTIFACTS)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.browser import ARTIFACTS, launched
from tests.helpers import GatewayThread, lookup_request, make_settings

ADMIN = "console-admin"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
XSS = '<img src=x onerror="window.__xss=1">'


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    settings = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN},
                             log={"requests": True, "prompts": True, "flush_interval_s": 0.05})
    with GatewayThread(settings) as g:
        yield g


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


def create(gw: GatewayThread, tenant: str, **fields: Any) -> dict[str, Any]:
    r = httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant, **fields}, headers=AS_ADMIN)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def chat(gw: GatewayThread, key: str, text: str, **extra: Any) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": "auto", "messages": [{"role": "user", "content": text}], **extra})


def listed(gw: GatewayThread, key_id: str) -> dict[str, Any]:
    keys = httpx.get(gw.url + "/v1/keys", headers=AS_ADMIN).json()["data"]
    found: dict[str, Any] = next(k for k in keys if k["id"] == key_id)
    return found


def until(check: Any, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


# The API features the console reads.

def test_the_key_list_shows_each_keys_spend_in_its_budget_period(gw: GatewayThread) -> None:
    tenant = "spend-" + secrets.token_hex(3)
    key = create(gw, tenant, budget_usd=5.0, budget_period="day")
    assert listed(gw, key["id"])["spend_usd"] == 0.0
    r = chat(gw, key["key"], "Design a fault-tolerant distributed queue with exactly-once delivery")
    cost = r.json()["smr"]["cost_usd"]
    assert cost > 0
    until(lambda: listed(gw, key["id"])["spend_usd"] > 0)
    assert listed(gw, key["id"])["spend_usd"] == pytest.approx(cost)
    rotated = httpx.post(gw.url + f"/v1/keys/{key['id']}/rotate", json={"grace_s": 60}, headers=AS_ADMIN).json()
    assert listed(gw, rotated["id"])["spend_usd"] == pytest.approx(cost)  # its lineage's, as the budget counts


def test_the_backends_are_listed_for_the_admin_with_prices_tiers_and_circuit(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/v1/backends", headers=AS_ADMIN)
    assert r.status_code == 200, r.text
    rows = {b["name"]: b for b in r.json()["data"]}
    assert set(rows) == {"local", "flash", "pro", "oai"}
    pro = rows["pro"]
    assert (pro["provider"], pro["model"], pro["input_price"], pro["output_price"]) == \
        ("gemini", "gemini-2.5-pro", 1.25, 10.0)
    assert pro["tiers"] == ["complex"] and pro["baseline"] is True and rows["oai"]["tiers"] == []
    assert pro["circuit"] == "closed" and pro["capabilities"]["tools"] is True
    assert "test-key" not in r.text and "api_key" not in r.text  # never a secret
    client = create(gw, "t-" + secrets.token_hex(3))["key"]
    refused = httpx.get(gw.url + "/v1/backends", headers={"Authorization": f"Bearer {client}"})
    assert refused.status_code == 403 and refused.json()["error"]["type"]


def test_a_logged_requests_detail_has_its_prompt_when_prompts_are_logged(gw: GatewayThread) -> None:
    key = create(gw, "p-" + secrets.token_hex(3))["key"]
    rid = chat(gw, key, "What is the capital of France?").json()["smr"]["request_id"]
    found = lookup_request(gw, rid, key).json()
    assert found["prompt"] == "user: What is the capital of France?"
    assert found["smr"]["model"] == "local" and found["smr"]["cost_usd"] > 0


# The pages.

def test_favicon_is_served(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg")
    console = httpx.get(gw.url + "/console")
    assert console.status_code == 200 and "script-src 'self'" in console.headers["content-security-policy"]
    urls = set(re.findall(r"https?://[^\s\"'`]+", console.text)) - {"http://www.w3.org/2000/svg"}
    assert not urls


def sign_in(page: Any, key: str) -> None:
    page.fill("#signin input", key)
    page.click("#signin button[type=submit]")


def loaded(page: Any, tab: str, before: str | None = None) -> None:
    """Wait until the console's tab `tab` has (re)loaded since `before` (its data-loaded stamp)."""
    page.wait_for_function("([tab, before]) => (document.body.dataset.loaded || '').startsWith(tab + ':') && "
                           "document.body.dataset.loaded !== before", arg=[tab, before])


def key_row(page: Any, key_id: str) -> Any:
    return page.locator(f"#key-table tr[data-id='{key_id}']")


def refresh_keys(page: Any) -> None:
    before = page.get_attribute("#key-table tbody", "data-at")
    page.click("#keys-refresh")
    page.wait_for_function("b => document.querySelector('#key-table tbody').dataset.at !== b", arg=before)


def test_a_key_made_in_the_console_spends_its_budget_is_rotated_and_revoked(gw: GatewayThread,
                                                                           browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tenant = "console-" + secrets.token_hex(3)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script("window.__xss = 0")
    try:
        page.goto(gw.url + "/console")
        assert not page.is_visible("#keys") and not page.is_visible("#tabs")  # signed out: the form only
        sign_in(page, ADMIN)
        loaded(page, "keys")
        page.fill("#create-key [name=name]", XSS)  # a name that is HTML is shown as text
        page.fill("#create-key [name=tenant]", tenant)
        page.fill("#create-key [name=budget_usd]", "0.002")
        page.click("#create-key button[type=submit]")
        page.wait_for_selector("#new-key:not([hidden])")
        key = page.input_value("#new-key-value")
        assert key.startswith("smr_")
        made = next(k for k in httpx.get(gw.url + "/v1/keys", headers=AS_ADMIN).json()["data"]
                    if k["tenant"] == tenant)
        assert made["budget_usd"] == 0.002 and made["budget_period"] == "total" and made["name"] == XSS
        page.click("#new-key-done")
        assert page.input_value("#new-key-value") == "" and not page.is_visible("#new-key")  # shown once

        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        answered = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(40):
                client.chat.completions.create(model="smr/complex", max_tokens=50, messages=[
                    {"role": "user", "content": XSS + " Explain the CAP theorem in detail"}])
                answered += 1
        assert answered >= 1 and refused.value.code == "budget_exceeded"

        until(lambda: listed(gw, made["id"])["spend_usd"] > 0 and len(
            httpx.get(gw.url + f"/v1/requests?key={made['id']}", headers=AS_ADMIN).json()["data"]) == answered + 1)
        spend = listed(gw, made["id"])["spend_usd"]
        refresh_keys(page)
        row = key_row(page, made["id"])
        assert row.locator("td").nth(0).text_content() == XSS
        assert row.locator("td.spend").text_content() == "$" + f"{spend:.6f}"[:8] or spend > 0
        used = float((row.locator(".used").text_content() or "").rstrip("%"))
        assert used == pytest.approx(100 * spend / 0.002, abs=0.1)
        row.locator("button[data-action=requests]").click()
        page.wait_for_selector(f"tr.extra[data-for='{made['id']}'] table.requests")
        statuses = page.eval_on_selector_all(f"tr.extra[data-for='{made['id']}'] table.requests tbody tr",
                                             "rs => rs.map(r => r.cells[1].textContent)")
        assert statuses[0] == "429 budget_exceeded" and statuses.count("200") == answered

        row.locator("button[data-action=rotate]").click()
        page.fill(f"tr.extra[data-for='{made['id']}'] [name=grace_s]", "600")
        page.click(f"tr.extra[data-for='{made['id']}'] button")
        page.wait_for_selector("#new-key:not([hidden])")
        rotated_key = page.input_value("#new-key-value")
        assert rotated_key.startswith("smr_") and rotated_key != key
        page.wait_for_function("n => document.querySelectorAll('#key-table tr[data-name]').length > n",
                               arg=0)
        keys = [k for k in httpx.get(gw.url + "/v1/keys", headers=AS_ADMIN).json()["data"] if k["tenant"] == tenant]
        successor = next(k for k in keys if k["rotated_from"] == made["id"])
        page.wait_for_selector(f"#key-table tr[data-id='{successor['id']}']")
        assert key_row(page, made["id"]).get_attribute("data-state") == "expires"
        assert key_row(page, successor["id"]).locator("td.spend").text_content() == \
            key_row(page, made["id"]).locator("td.spend").text_content()  # the lineage's spend

        key_row(page, successor["id"]).locator("button[data-action=revoke]").click()
        page.click(f"tr.extra[data-for='{successor['id']}'] button.danger")
        page.wait_for_selector(f"#key-table tr[data-id='{successor['id']}'][data-state='revoked']")
        gone = openai.OpenAI(base_url=gw.url + "/v1", api_key=rotated_key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            gone.models.list()
        page.screenshot(path=str(ARTIFACTS / "console.png"))
        assert page.evaluate("window.__xss") == 0 and page.evaluate("document.images.length") == 0

        page.goto(gw.url + "/dashboard")  # the same tab: the key stays in its session storage
        page.wait_for_selector("body[data-loaded]")
        page.fill("#tenant", tenant)
        page.dispatch_event("#tenant", "change")
        page.wait_for_function("t => { const rows = [...document.querySelectorAll('#recent tbody tr')]; "
                               "return rows.length >= 2 && rows.every(r => r.cells[1].textContent === t); }",
                               arg=tenant)  # the tenant's rows only
        first = page.locator("#recent tbody tr td.id a").last  # the oldest: an answered request
        rid = first.text_content()
        first.click()
        page.wait_for_selector(f"#detail[data-id='{rid}']")
        fields = dict(page.eval_on_selector_all("#detail dt", "ds => ds.map(d => [d.textContent, "
                                                "d.nextElementSibling.textContent])"))
        assert fields["model"] == "pro" and fields["tier"] == "complex" and fields["fallbacks"] == "none"
        assert fields["prompt"] == "user: " + XSS + " Explain the CAP theorem in detail"
        assert fields["cost"].startswith("$") and fields["status"] == "200"
        assert page.evaluate("window.__xss") == 0 and page.evaluate("document.images.length") == 0
        page.screenshot(path=str(ARTIFACTS / "request-detail.png"), full_page=True)
    finally:
        page.close()


def test_tenants_backends_and_a_client_key_in_the_console(gw: GatewayThread, browser: Any) -> None:
    tenant = "tl-" + secrets.token_hex(3)
    client_key = create(gw, tenant)["key"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(gw.url + "/console#tenants")
        sign_in(page, ADMIN)
        loaded(page, "tenants")
        page.wait_for_selector(f"#tenant-table tr[data-tenant='{tenant}']")
        page.click(f"#tenant-table tr[data-tenant='{tenant}'] a")
        page.wait_for_function("t => document.getElementById('tenant-form').dataset.tenant === t", arg=tenant)
        page.fill("#tenant-limits [name=budget_usd]", "12.5")
        page.fill("#tenant-limits [name=rate_limit_rpm]", "30")
        page.select_option("#tenant-limits [name=budget_period]", "month")
        page.check("#tenant-limits input[value=simple]")
        page.click("#tenant-form button[type=submit]")
        page.wait_for_selector("#tenant-saved:has-text('saved')")
        got = httpx.get(gw.url + f"/v1/tenants/{tenant}/limits", headers=AS_ADMIN).json()["limits"]
        assert (got["budget_usd"], got["rate_limit_rpm"], got["budget_period"], got["allowed_tiers"]) == \
            (12.5, 30, "month", ["simple"])

        before = page.get_attribute("body", "data-loaded")
        page.click("#tabs a[data-tab=backends]")
        loaded(page, "backends", before)
        rows = page.eval_on_selector_all("#backend-table tbody tr",
                                         "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
        by_name = {r[0]: r for r in rows}
        assert set(by_name) == {"local", "flash", "pro (baseline)", "oai"}
        pro = by_name["pro (baseline)"]
        assert pro[3] == "complex" and pro[4] == "$1.25" and pro[5] == "$10" and pro[7] == "closed"
        assert pro[8] == "reachable" and by_name["oai"][3] == "by name only"

        client = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            client.goto(gw.url + "/console")
            sign_in(client, client_key)
            client.wait_for_selector("#error:not([hidden])")
            assert "admin key" in (client.text_content("#error") or "")
            assert client.text_content("#who") == "not the admin key" and not client.is_visible("#keys")
        finally:
            client.close()
    finally:
        page.close()


def test_the_console_fits_a_phone(gw: GatewayThread, browser: Any) -> None:
    create(gw, "phone-" + secrets.token_hex(3), budget_usd=1.0, rate_limit_rpm=10)
    page = browser.new_page(viewport={"width": 420, "height": 900})
    try:
        page.goto(gw.url + "/console")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 420
        sign_in(page, ADMIN)
        for tab in ("keys", "tenants", "backends"):
            before = page.get_attribute("body", "data-loaded")
            page.goto(gw.url + "/console#" + tab)
            loaded(page, tab, before)
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 420, tab
        page.screenshot(path=str(ARTIFACTS / "console-420.png"), full_page=True)
    finally:
        page.close()
