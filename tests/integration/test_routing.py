"""Tier routing: forced tiers, direct models, and `auto` through the classifier."""

from __future__ import annotations

import httpx
import openai

from tests.helpers import GatewayThread

HEADERS = ("x-smr-tier", "x-smr-model", "x-smr-provider", "x-smr-classifier", "x-smr-cost-usd",
           "x-smr-savings-usd", "x-smr-cache")
TRANSLATE = "Translate 'good morning, my friend' to Spanish"
SYSTEM_DESIGN = (
    "Design the architecture of a globally distributed payment system. It must handle 50,000 "
    "transactions per second, guarantee exactly-once processing, survive the loss of a whole region, "
    "and support PCI-DSS audits. Describe the data model, the consensus and replication strategy, "
    "failover, idempotency keys, and the trade-offs between consistency and latency. Include how you "
    "would debug cross-region inconsistencies and optimise hot partitions."
)


def chat(gw: GatewayThread, prompt: str, model: str | None = "auto", **headers: str) -> httpx.Response:
    body: dict[str, object] = {"messages": [{"role": "user", "content": prompt}]}
    if model is not None:
        body["model"] = model
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_auto_sends_translation_and_system_design_to_different_tiers(gateway: GatewayThread) -> None:
    easy = chat(gateway, TRANSLATE)
    hard = chat(gateway, SYSTEM_DESIGN)
    assert easy.status_code == hard.status_code == 200
    assert easy.headers["x-smr-tier"] == "simple" and easy.headers["x-smr-model"] == "local"
    assert hard.headers["x-smr-tier"] == "complex" and hard.headers["x-smr-model"] == "pro"
    assert easy.headers["x-smr-classifier"] == hard.headers["x-smr-classifier"] == "heuristic"
    # The cheap route saves money against the baseline; the baseline route saves nothing.
    assert float(easy.headers["x-smr-savings-usd"]) > 0
    assert float(hard.headers["x-smr-savings-usd"]) == 0


def test_missing_model_uses_configured_default(gateway: GatewayThread) -> None:
    r = chat(gateway, TRANSLATE, model=None)
    assert r.headers["x-smr-tier"] == "simple" and r.headers["x-smr-classifier"] == "heuristic"


def test_every_routed_response_has_the_headers(gateway: GatewayThread) -> None:
    r = chat(gateway, "Explain Python decorators")
    assert all(h in r.headers for h in HEADERS)
    assert r.headers["x-smr-tier"] == "medium" and r.headers["x-smr-provider"] == "gemini"
    assert r.headers["x-smr-cache"] == "bypass"  # this gateway runs without a cache


def test_forced_tier_by_model_alias(gateway: GatewayThread) -> None:
    r = chat(gateway, TRANSLATE, model="smr/complex")
    assert r.headers["x-smr-tier"] == "complex" and r.headers["x-smr-model"] == "pro"
    assert r.headers["x-smr-classifier"] == "forced"


def test_forced_tier_by_header_beats_model(gateway: GatewayThread) -> None:
    r = chat(gateway, SYSTEM_DESIGN, model="auto", **{"X-SMR-Force-Tier": "simple"})
    assert r.headers["x-smr-tier"] == "simple" and r.headers["x-smr-model"] == "local"


def test_direct_model(gateway: GatewayThread) -> None:
    r = chat(gateway, TRANSLATE, model="oai")
    assert r.headers["x-smr-tier"] == "direct" and r.headers["x-smr-model"] == "oai"
    assert r.headers["x-smr-provider"] == "openai" and r.headers["x-smr-classifier"] == "direct"


def test_streaming_response_carries_route_headers(gateway: GatewayThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
            model="auto", stream=True, messages=[{"role": "user", "content": TRANSLATE}]) as r:
        assert r.headers["x-smr-tier"] == "simple"
        assert r.headers["content-type"].startswith("text/event-stream")
        assert all(h in r.headers for h in HEADERS)


def test_complete_endpoint(gateway: GatewayThread) -> None:
    r = httpx.post(gateway.url + "/v1/complete", json={"prompt": TRANSLATE}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"response", "model_used", "difficulty_tag", "estimated_cost", "estimated_savings",
                         "latency_ms", "cache_hit", "smr"}
    assert body["difficulty_tag"] == "simple" and body["model_used"] == "local"
    assert body["smr"]["tier"] == "simple" and body["smr"]["classifier"] == "heuristic"  # why (issue 14)
    assert TRANSLATE.split()[0] in body["response"]
    assert body["estimated_savings"] > 0 and body["cache_hit"] is False and body["latency_ms"] > 0
    forced = httpx.post(gateway.url + "/v1/complete", json={"prompt": TRANSLATE, "force_tier": "complex"}).json()
    assert forced["difficulty_tag"] == "complex" and forced["model_used"] == "pro"
    assert forced["estimated_savings"] == 0 and forced["estimated_cost"] > 0


def test_health(gateway: GatewayThread) -> None:
    h = httpx.get(gateway.url + "/health").json()
    assert h["status"] == "ok" and h["simulated"] is False
    assert set(h["providers"]) == {"local", "flash", "pro", "oai"}
    assert all(p["configured"] and p["reachable"] for p in h["providers"].values())
    assert h["classifiers"] == ["heuristic"]
