"""Learning in the dashboard (issue 26): the judged share, each tier pair's quality/cost curve with today's
operating point, the semantic cache's measured wrong-hit rate and learning's spend apart from serving's,
from `GET /v1/usage?view=learning` (its `learning` object), drawn on /dashboard.

The judgements, cache checks and log rows are seeded straight into Postgres (one tenant's figures are
known exactly; another tenant's must never show to the first one's key), so every number on the page is
computed here by hand and compared. The browser is Debian's chromium driven by Playwright, as in
tests/integration/test_browser.py.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from gateway.cache.acceptance import wilson_upper
from gateway.fakes.server import ThreadedFakes
from tests.browser import ARTIFACTS, launched
from tests.helpers import GatewayThread, make_settings, new_api_key

ADMIN = "learning-admin"
CUTOFFS = [0.55, 0.8]
# Ten judged `simple` answers: the five the router scored highest needed the reference (verdict
# "reference"), the five lowest were as good (tie). With the cut-off at 0.55, 4 of the 10 go up.
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.25, 0.2, 0.15, 0.1]
VERDICTS = ["reference"] * 5 + ["tie"] * 5


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    # learning.sample_rate stays 0 (off now): the page shows the judgements already stored, and says
    # learning is off where there are none.
    settings = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN},
                             routing={"cutoffs": CUTOFFS}, cache={"enabled": False, "max_wrong_hit_rate": 0.02})
    with GatewayThread(settings) as g:
        yield g


def seed(pg_url: str, tenant: str, *, auto: int, other: int, verdicts: list[str], scores: list[float],
         checks: list[str], near_misses: int, serve_usd: float, learn_usd: float) -> None:
    """`auto` answered auto requests and `other` smr/complex ones (serve_usd each); judgements of the first
    len(verdicts) auto requests; cache checks of hits ('right'/'wrong'/'unsure') and near misses of further
    requests; one learning row (learn_usd) per judgement and per checked hit."""
    now = dt.datetime.now(dt.UTC)
    ids = [f"req_seed{secrets.token_hex(6)}" for _ in range(auto + other + len(checks) + near_misses)]
    with psycopg.connect(pg_url) as c:
        for i, rid in enumerate(ids):
            model = "auto" if i < auto else "smr/complex"
            c.execute("INSERT INTO request_log (request_id, ts, endpoint, cache_status, latency_ms, http_status, "
                      "tenant, requested_model, tier, cost_usd) VALUES (%s, %s, 'chat', 'miss', 5, 200, %s, %s, "
                      "'simple', %s)", (rid, now, tenant, model, serve_usd if i < auto + other else 0.0))
        for rid, verdict, score in zip(ids, verdicts, scores, strict=False):
            c.execute("INSERT INTO judgements (request_id, tenant, tier, classifier, score, backend, reference_tier, "
                      "reference_backend, verdict, judge, cost_usd) VALUES (%s, %s, 'simple', 'difficulty', %s, "
                      "'local', 'complex', 'pro', %s, 'model:oai', %s)", (rid, tenant, score, verdict, learn_usd))
        checked = ids[auto + other:]
        kinds = [("hit", v) for v in checks] + [("near_miss", "right")] * near_misses
        for rid, (kind, verdict) in zip(checked, kinds, strict=True):
            c.execute("INSERT INTO cache_checks (request_id, tenant, kind, similarity, threshold, verdict, judge, "
                      "cost_usd) VALUES (%s, %s, %s, 0.93, 0.92, %s, 'model:oai', %s)",
                      (rid, tenant, kind, verdict, learn_usd))
        for rid in ids[:len(verdicts)] + checked[:len(checks)]:
            c.execute("INSERT INTO request_log (request_id, ts, endpoint, cache_status, latency_ms, http_status, "
                      "requested_model, tier, backend, cost_usd, client_request_id) VALUES (%s, %s, 'learning', "
                      "'bypass', 5, 200, 'learning:reference', 'complex', 'pro', %s, %s)",
                      ("req_learn" + secrets.token_hex(6), now, learn_usd, rid))


def unseed(pg_url: str, *tenants: str) -> None:
    """These tenants' seeded judgements and cache checks out again: other tests' gateways learn from every
    stored check."""
    with psycopg.connect(pg_url) as c:
        for table in ("judgements", "cache_checks"):
            c.execute(f"DELETE FROM {table} WHERE tenant = ANY(%s)", (list(tenants),))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tenants(gw: GatewayThread, pg_url: str) -> Iterator[dict[str, str]]:
    """Two seeded tenants and one with nothing: name -> a client key of it."""
    mine, theirs, none = ("learn-" + secrets.token_hex(3), "rival-" + secrets.token_hex(3),
                          "quiet-" + secrets.token_hex(3))
    try:
        seed(pg_url, mine, auto=40, other=2, verdicts=VERDICTS, scores=SCORES,
             checks=["right"] * 19 + ["wrong", "unsure"], near_misses=3, serve_usd=0.001, learn_usd=0.0005)
        seed(pg_url, theirs, auto=10, other=0, verdicts=["reference"] * 10, scores=[0.5] * 10, checks=["wrong"] * 5,
             near_misses=0, serve_usd=0.5, learn_usd=1.0)
        yield {name: new_api_key(gw, ADMIN, "k", name) for name in (mine, theirs, none)}
    finally:
        unseed(pg_url, mine, theirs)


def learning(gw: GatewayThread, bearer: str, **params: str) -> dict[str, Any]:
    r = httpx.get(gw.url + "/v1/usage", params={"view": "learning", "group_by": "all", **params},
                  headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


MINE = {  # what the first tenant's seeded rows make, worked out by hand
    "auto_requests": 40, "judged": 10, "judged_share": 0.25, "verdicts": {"served": 0, "reference": 5, "tie": 5},
    "scored": 10, "learning_calls": 10 + 21,  # a learning row per judgement and per checked hit, $0.0005 each
    "learning_cost_usd": 0.0155, "serving_cost_usd": 0.042, "learning_share_of_spend": round(0.0155 / 0.042, 4),
}


def test_the_learning_view_computes_the_figures_from_the_tenants_rows(gw: GatewayThread,
                                                                     tenants: dict[str, str]) -> None:
    mine, theirs, quiet = tenants
    body = learning(gw, tenants[mine])
    assert body["tenant"] == mine and body["data"][0]["requests"] == MINE["learning_calls"]
    got = body["learning"]
    assert {k: got[k] for k in MINE} == MINE
    (pair,) = got["pairs"]
    # all on simple: half the reference's quality; each of the five that needed it recovers a tenth
    assert pair["pair"] == "simple->complex" and pair["judged"] == 10 and pair["cheap_quality"] == 0.5
    assert [p["quality"] for p in pair["points"]] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert [p["cheap_share"] for p in pair["points"]][::5] == [1.0, 0.5, 0.0]
    assert pair["apgr"] == round(8 / 11, 4)  # mean of 0, .2, .4, .6, .8 and six 1s: a perfect ranking
    # today: cut-off 0.55 sends the four scored 0.6-0.9 up: 9 of 10 good answers with 40 % on complex
    assert (pair["cutoff"], pair["quality_at_cutoff"], pair["reference_share_at_cutoff"]) == (0.55, 0.9, 0.4)
    cache = got["cache"]
    assert (cache["checks"], cache["wrong"], cache["unsure"], cache["near_misses"]) == (20, 1, 1, 3)
    assert cache["wrong_hit_rate"] == 0.05 and cache["wrong_hit_rate_upper"] == round(wilson_upper(1, 20), 4)
    assert cache["bound"] == 0.02 and cache["source"] == "off" and cache["threshold"] is None  # no semantic cache
    assert got["on"] is False and got["sample_rate"] == 0

    # the rival's key sees its own figures only; the admin sees either tenant, or both
    rival = learning(gw, tenants[theirs])["learning"]
    assert (rival["judged"], rival["cache"]["checks"], rival["learning_cost_usd"]) == (10, 5, 15.0)
    assert learning(gw, tenants[mine], tenant=theirs)["learning"]["judged"] == 10  # a key cannot pick a tenant
    assert learning(gw, ADMIN, tenant=mine)["learning"]["judged"] == 10
    everyone = learning(gw, ADMIN)["learning"]
    assert everyone["judged"] >= 20 and everyone["cache"]["checks"] >= 25 and everyone["learning_cost_usd"] >= 15.0155
    nothing = learning(gw, tenants[quiet])["learning"]
    assert (nothing["judged"], nothing["auto_requests"], nothing["pairs"], nothing["cache"]["wrong_hit_rate"]) == (
        0, 0, [], None)
    served = httpx.get(gw.url + "/v1/usage", params={"group_by": "all"},
                       headers={"Authorization": f"Bearer {tenants[mine]}"}).json()
    assert "learning" not in served and served["data"][0]["cost_usd"] == MINE["serving_cost_usd"]


def test_the_key_filter_counts_the_learning_made_for_that_keys_requests(gw: GatewayThread, pg_url: str,
                                                                       tenants: dict[str, str]) -> None:
    # learning's rows carry no key: a key's are those made for its requests (none, before the fix)
    mine = next(iter(tenants))
    listed = httpx.get(gw.url + "/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
    key_id = next(k["id"] for k in listed if k["tenant"] == mine)
    with psycopg.connect(pg_url) as c:  # the five judged requests the reference did better become this key's
        c.execute("UPDATE request_log SET key_id = %s::uuid WHERE request_id IN "
                  "(SELECT request_id FROM judgements WHERE tenant = %s AND verdict = 'reference')", (key_id, mine))
    got = learning(gw, ADMIN, key=key_id)["learning"]
    assert (got["auto_requests"], got["judged"], got["learning_calls"]) == (5, 5, 5)
    assert got["learning_cost_usd"] == 0.0025 and got["serving_cost_usd"] == 0.005
    assert learning(gw, tenants[mine])["learning"]["judged"] == 10  # the tenant's figures are unchanged


def test_the_dashboard_draws_the_four_learning_panels(gw: GatewayThread, tenants: dict[str, str],
                                                      browser: Any) -> None:
    mine, theirs, quiet = tenants
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(gw.url + "/dashboard")
        page.fill("#signin input", tenants[mine])
        page.click("#signin button[type=submit]")
        page.wait_for_selector("body[data-loaded]")
        assert page.is_visible("#learning") and not page.is_visible("#learning-empty")
        text = {i: page.text_content("#" + i) for i in ("judged-share", "judged-count", "auto-count", "cache-rate",
                                                        "cache-checks", "cache-upper", "cache-bound", "cache-threshold",
                                                        "learning-cost", "serving-cost", "learning-share")}
        assert text == {"judged-share": "25.0%", "judged-count": "10", "auto-count": "40", "cache-rate": "5.0%",
                        "cache-checks": "20 (1 wrong, 1 unsure)",
                        "cache-upper": f"{100 * round(wilson_upper(1, 20), 4):.1f}%", "cache-bound": "2.0%",
                        "cache-threshold": "no semantic cache", "learning-cost": "$0.0155",
                        "serving-cost": "$0.0420", "learning-share": "36.9%"}
        assert page.text_content("#cache-verdict") == "over the bound"  # 5 % measured against 2 %
        (line,) = page.eval_on_selector_all("#curve polyline",
                                            "ls => ls.map(l => [l.dataset.pair, l.getAttribute('points')])")
        assert line[0] == "simple->complex" and len(line[1].split()) == 11
        ys = [float(p.split(",")[1]) for p in line[1].split()]
        assert ys[0] > ys[5] and ys[5] == ys[-1]  # climbs to the reference's quality at half the calls, then flat
        point = page.eval_on_selector("#curve circle.operating-point",
                                      "c => [c.dataset.pair, c.dataset.quality, c.dataset.cheapShare]")
        assert point == ["simple->complex", "0.9", "0.6"]
        note = page.text_content("#curve-notes .pair-note") or ""
        assert "APGR 0.727" in note and "90.0% of complex's quality with 60.0% of calls on simple" in note
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#learning").screenshot(path=str(ARTIFACTS / "dashboard-learning.png"))
        # a phone: nothing scrolls sideways, the chart fits its panel
        page.set_viewport_size({"width": 420, "height": 900})
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 420
        assert page.evaluate("document.getElementById('curve').getBoundingClientRect().right") <= 420
        page.locator("#learning").screenshot(path=str(ARTIFACTS / "dashboard-learning-420.png"))

        # another tenant's key: its own figures, none of the first tenant's
        page.click("#signin button.secondary")
        page.fill("#signin input", tenants[theirs])
        before = int(page.get_attribute("body", "data-loaded") or 0)
        page.click("#signin button[type=submit]")
        page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=before)
        assert page.text_content("#judged-share") == "100.0%" and page.text_content("#cache-rate") == "100.0%"

        # nothing judged, learning off: says so instead of empty panels
        page.click("#signin button.secondary")
        page.fill("#signin input", tenants[quiet])
        before = int(page.get_attribute("body", "data-loaded") or 0)
        page.click("#signin button[type=submit]")
        page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=before)
        assert not page.is_visible("#learning")
        assert page.text_content("#learning-empty") == "learning is off (learning.sample_rate = 0)"
    finally:
        page.close()


def test_a_tenant_name_in_the_figures_is_text_not_html(gw: GatewayThread, pg_url: str, browser: Any) -> None:
    evil = '<img src=x onerror="window.__pwned=1">'
    seed(pg_url, evil, auto=2, other=0, verdicts=["tie"], scores=[0.1], checks=[], near_misses=0, serve_usd=0.001,
         learn_usd=0.0001)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(gw.url + "/dashboard")
        page.fill("#signin input", ADMIN)
        page.click("#signin button[type=submit]")
        page.wait_for_selector("body[data-loaded]")
        before = int(page.get_attribute("body", "data-loaded") or 0)
        page.fill("#tenant", evil)
        page.dispatch_event("#tenant", "change")
        page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=before)
        assert page.text_content("#judged-share") == "50.0%" and page.text_content("#who") == "tenant: " + evil
        assert page.evaluate("window.__pwned") is None and page.locator("img").count() == 0
    finally:
        page.close()
        unseed(pg_url, evil)
