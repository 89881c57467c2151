"""The dashboard and the playground in a real browser (Debian's chromium driven by Playwright, issue 16):
tokens arrive one by one in the playground, the dashboard draws the requests just made, and a client key
is shown its own tenant only. Screenshots go to tests/artifacts/ (SMR_TEST_ARTIFACTS)."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from tests.browser import ARTIFACTS, launched
from tests.helpers import GatewayThread, make_settings

ADMIN = "browser-admin"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    settings = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN})
    with GatewayThread(settings) as g:
        yield g


def new_key(gw: GatewayThread, tenant: str) -> str:
    r = httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant},
                   headers={"Authorization": f"Bearer {ADMIN}"})
    return str(r.json()["key"])


def chat(gw: GatewayThread, key: str, text: str) -> str:
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                   json={"model": "auto", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return str(r.json()["smr"]["request_id"])


def sign_in(page: Any, key: str) -> None:
    page.fill("#signin input", key)
    page.click("#signin button[type=submit]")


def test_the_pages_are_served_offline_with_a_strict_policy(gw: GatewayThread) -> None:
    root = httpx.get(gw.url + "/", follow_redirects=False)
    assert root.status_code == 302 and root.headers["location"] == "/dashboard"
    for path in ("/dashboard", "/playground", "/static/dashboard.js", "/static/style.css"):
        r = httpx.get(gw.url + path)
        assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
        urls = set(re.findall(r"https?://[^\s\"'`]+", r.text)) - {"http://www.w3.org/2000/svg"}  # a namespace
        assert not urls  # no CDN: every asset is local
    assert httpx.get(gw.url + "/static/../app.py").status_code == 404
    assert httpx.get(gw.url + "/static/secret.txt").json()["error"]["type"] == "invalid_request_error"


def test_playground_streams_and_dashboard_shows_the_tenant(gw: GatewayThread, fakes: ThreadedFakes,
                                                           browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    mine, theirs = "web-" + secrets.token_hex(3), "other-" + secrets.token_hex(3)
    key, other = new_key(gw, mine), new_key(gw, theirs)
    my_ids = {chat(gw, key, "What is the capital of France?"),
              chat(gw, key, "Design a fault-tolerant distributed queue with exactly-once delivery")}
    their_id = chat(gw, other, "hello from another tenant")
    slow = Behaviour(chunk_delay_ms=120, pieces=6)
    fakes.ollama.behaviour, fakes.gemini.behaviour = slow, slow

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(gw.url + "/playground")
    sign_in(page, key)
    page.wait_for_selector("#model option[value='smr/complex']", state="attached")
    assert "auto" in page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    page.evaluate("""() => {
        window.__seen = [];
        new MutationObserver(() => {
            const t = document.querySelector('.msg.assistant .text');
            if (t && t.textContent && window.__seen[window.__seen.length - 1] !== t.textContent)
                window.__seen.push(t.textContent);
        }).observe(document.getElementById('chat'), {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("#prompt", "Explain why the sky is blue to a child, in a few sentences")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-done='1']", timeout=20_000)
    seen: list[str] = page.evaluate("window.__seen")
    final = page.text_content(".msg.assistant .text") or ""
    assert len(seen) >= 4 and seen[-1] == final, seen  # the answer grew piece by piece
    assert all(b.startswith(a) for a, b in itertools.pairwise(seen))
    meta = page.text_content(".msg.assistant .meta") or ""
    for part in ("tier ", "model ", "classifier ", "score ", "cost $", "saved $", "cache bypass"):
        assert part in meta, meta
    assert page.evaluate("sessionStorage.getItem('smr.key')") == key and key not in page.url
    assert page.evaluate("localStorage.length") == 0
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    fakes.ollama.behaviour = fakes.gemini.behaviour = Behaviour()

    deadline = time.time() + 10  # the playground's request is logged a moment after it ends
    while len(httpx.get(gw.url + "/v1/requests", headers={"Authorization": f"Bearer {key}"}).json()["data"]) < 3:
        assert time.time() < deadline
        time.sleep(0.1)
    page.goto(gw.url + "/dashboard")
    sign_in(page, key)
    page.wait_for_selector("body[data-loaded]")
    assert page.text_content("#who") == f"tenant: {mine}"
    assert page.get_attribute("#cards", "data-requests") == "3"
    shown = set(page.eval_on_selector_all("#recent tbody tr", "rows => rows.map(r => r.dataset.id)"))
    assert my_ids < shown and their_id not in shown and len(shown) == 3  # its own tenant only
    lines = page.eval_on_selector_all("#timeline polyline",
                                      "ls => ls.map(l => [l.dataset.series, l.getAttribute('points')])")
    assert {s for s, _ in lines} == {"cost", "baseline_cost", "savings"}
    baseline = dict(lines)["baseline_cost"].split()
    assert baseline and any(float(p.split(",")[1]) < 150 for p in baseline)  # drawn above the axis
    tiers = page.eval_on_selector_all("#tiers .bar", "bs => bs.map(b => b.dataset.group)")
    assert {"simple", "complex"} <= set(tiers)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    admin = browser.new_page(viewport={"width": 1280, "height": 900})
    admin.goto(gw.url + "/dashboard")
    sign_in(admin, ADMIN)
    admin.wait_for_selector("body[data-loaded]")
    every = set(admin.eval_on_selector_all("#recent tbody tr", "rows => rows.map(r => r.dataset.id)"))
    assert their_id in every and my_ids < every and admin.text_content("#who") == "admin: all tenants"
    admin.fill("#tenant", theirs)
    admin.dispatch_event("#tenant", "change")
    deadline = time.time() + 10
    while admin.locator("#recent tbody tr").count() != 1:  # the page's CSP allows no string eval
        assert time.time() < deadline
        time.sleep(0.05)
    assert admin.get_attribute("#recent tbody tr", "data-id") == their_id
    wrong = browser.new_page()
    wrong.goto(gw.url + "/dashboard")
    sign_in(wrong, "smr_not-a-key")
    wrong.wait_for_selector("#error:not([hidden])")
    assert wrong.text_content("#who") == "key refused"


# The dashboard's defects (issue 28): each test failed before its fix.

def xaxis_labels(page: Any) -> list[str]:
    texts: list[str] = page.eval_on_selector_all("#timeline text", "ts => ts.map(t => t.textContent)")
    return [t for t in texts if not t.startswith("$")]  # the y axis' labels are dollars


def test_signed_out_the_dashboard_shows_only_the_sign_in_form(gw: GatewayThread, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(gw.url + "/dashboard")
        page.wait_for_selector("#who:has-text('not signed in')")
        assert page.is_visible("#signin input") and page.is_visible("#signin button[type=submit]")
        for hidden in ("#signin button.secondary", ".filters", "#cards", ".panels", "#recent", "#timeline"):
            assert not page.is_visible(hidden), hidden
        sign_in(page, ADMIN)
        page.wait_for_selector("body[data-loaded]")
        assert page.is_visible("#signin button.secondary") and page.is_visible("#recent")
        page.click("#signin button.secondary")
        page.wait_for_selector("#who:has-text('not signed in')")
        assert not page.is_visible("#recent") and not page.is_visible("#signin button.secondary")
    finally:
        page.close()


def an_ok_and_a_refused_request(gw: GatewayThread) -> tuple[str, str]:
    """A fresh tenant's key and the id of its one answered request; its second request was refused."""
    key = new_key(gw, "hour-" + secrets.token_hex(3))
    ok = chat(gw, key, "What is the capital of France?")
    bad = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                     content=b'{"model": "auto", "messages": [')  # refused before any routing: no tier, no model
    assert bad.status_code == 400
    deadline = time.time() + 10
    while len(httpx.get(gw.url + "/v1/requests", headers={"Authorization": f"Bearer {key}"}).json()["data"]) < 2:
        assert time.time() < deadline
        time.sleep(0.05)
    return key, ok


def last_hour(page: Any) -> None:
    page.wait_for_selector("body[data-loaded]")
    before = int(page.get_attribute("body", "data-loaded") or 0)  # read before the reload it starts can end
    page.select_option("#range", "1")
    page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=before)


def test_a_one_hour_range_labels_its_bucket_once(gw: GatewayThread, browser: Any) -> None:
    key, _ = an_ok_and_a_refused_request(gw)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(gw.url + "/dashboard")
        sign_in(page, key)
        last_hour(page)
        labels = xaxis_labels(page)
        assert labels and len(labels) == len(set(labels)), labels  # not the same hour at both ends
    finally:
        page.close()


def test_error_rows_say_error_not_a_tier_or_model(gw: GatewayThread, browser: Any) -> None:
    key, ok = an_ok_and_a_refused_request(gw)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(gw.url + "/dashboard")
        sign_in(page, key)
        last_hour(page)
        rows = page.eval_on_selector_all(
            "#recent tbody tr", "rs => rs.map(r => [r.dataset.id, [...r.cells].map(c => c.textContent)])")
        cells = {rid: texts for rid, texts in rows}
        refused = next(texts for rid, texts in rows if rid != ok)
        assert refused[2] == "error" and refused[5] == "-", refused  # tier, model: not "none" / "(none)"
        assert cells[ok][2] == "simple" and cells[ok][5] == "local"
        tiers = page.eval_on_selector_all("#tiers .bar", "bs => bs.map(b => b.dataset.group)")
        models = page.eval_on_selector_all("#models .bar", "bs => bs.map(b => b.dataset.group)")
        assert set(tiers) == {"simple", "error"} and set(models) == {"local", "error"}, (tiers, models)
    finally:
        page.close()


def test_the_dashboard_fits_a_phone(gw: GatewayThread, browser: Any) -> None:
    key = new_key(gw, "phone-" + secrets.token_hex(3))
    chat(gw, key, "Design a fault-tolerant distributed queue with exactly-once delivery")
    page = browser.new_page(viewport={"width": 420, "height": 900})
    try:
        page.goto(gw.url + "/dashboard")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 420
        sign_in(page, key)
        page.wait_for_selector("#recent tbody tr")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 420  # the table scrolls in its box
        page.screenshot(path=str(ARTIFACTS / "dashboard-420.png"), full_page=True)
    finally:
        page.close()
