"""Routing users can trust (issue 14), each behaviour through the real openai SDK against a running
gateway: a follow-up keeps the conversation's tier, a wobbling score does not switch models, requests
needing what a backend lacks skip it, cascades escalate on each checked failure (and not on a good
answer), shadow mode logs what routing would save (equal to the dry-run sum on a replayed log), and feedback
is stored per tenant. (Routing and cache savings reported apart: test_cache.py.)"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import Backend, Capabilities
from router_core.classifiers.heuristic import HeuristicClassifier
from router_core.features import estimate_tokens
from router_core.types import Conversation, Turn
from tests.helpers import FAST, GatewayThread, make_settings

ADMIN = "trust-admin"
H = {"Authorization": f"Bearer {ADMIN}"}
HARD = "Design a sharded, fault-tolerant job queue with exactly-once delivery, with a proof sketch of correctness"


def openai_backends(fakes: ThreadedFakes) -> list[Backend]:
    def b(name: str, price: float, **caps: Any) -> Backend:
        return Backend(name=name, provider="openai", model=name, base_url=fakes.openai_url, api_key="k",
                       input_price=price, output_price=2 * price, timeouts=FAST, capabilities=Capabilities(**caps))

    return [b("o-cheap", 0.1, vision=False), b("o-mid", 0.5), b("o-strong", 2.0)]


def start(fakes: ThreadedFakes, pg_url: str, tiers: dict[str, list[str]], **sections: Any) -> GatewayThread:
    routing = {"baseline": "o-strong", **sections.pop("routing", {})}
    return GatewayThread(make_settings(fakes, openai_backends(fakes), tiers=tiers, db_url=pg_url,
                                       auth={"enabled": True, "admin_key": ADMIN}, routing=routing,
                                       log={"prompts": True, "flush_interval_s": 0.05}, **sections))


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    # simple: the cheap OpenAI-compatible model (checked, escalated once), medium: flash, complex: pro
    tiers = {"simple": ["o-cheap"], "medium": ["flash"], "complex": ["pro"], "cascade": ["simple"]}
    with start(fakes, pg_url, tiers) as g:
        yield g


def new_key(gw: GatewayThread, tenant: str) -> str:
    return str(httpx.post(gw.url + "/v1/keys", json={"name": "k", "tenant": tenant}, headers=H).json()["key"])


def client(gw: GatewayThread, tenant: str | None = None) -> openai.OpenAI:
    key = new_key(gw, tenant or "trust-" + secrets.token_hex(3))
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def smr(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.smr  # the gateway's own field: the SDK keeps unknown fields
    return out


def test_a_follow_up_stays_on_the_hard_tier(gw: GatewayThread) -> None:
    c = client(gw)
    first = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": HARD}])
    assert smr(first)["tier"] == "complex"
    alone = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "yes, do it"}])
    assert smr(alone)["tier"] == "simple"  # on its own, it is trivial
    follow = c.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": HARD}, {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "yes, do it"}])
    s = smr(follow)
    assert s["tier"] == "complex" and follow.model == "pro"
    assert any(r.startswith("follow-up") for r in s["reasons"])


def test_a_wobbling_score_does_not_switch_models(fakes: ThreadedFakes, pg_url: str) -> None:
    # Six questions of one conversation whose own scores sit around a cut-off placed among them.
    turns = [f"Explain point {i} of the plan: {w}" for i, w in enumerate(
        ["the retry policy", "why retries are bounded and how the backoff grows with each failed attempt",
         "the queue", "how the consumer acknowledges a message after it is processed and stored",
         "the logs", "how the dead-letter queue is drained, replayed and audited over several weeks of operation"])]
    h = HeuristicClassifier()
    scores = [h.score_now(Conversation((Turn("user", t),))).score for t in turns]
    cut = sorted(scores)[len(scores) // 2]
    margin = max(abs(s - cut) for s in scores) + 0.01
    raw = ["medium" if s >= cut else "simple" for s in scores]
    assert len({*raw}) == 2  # on their own they would flip between tiers
    tiers = {"simple": ["o-cheap"], "medium": ["o-mid"], "complex": ["o-strong"]}
    with start(fakes, pg_url, tiers, routing={"cutoffs": [cut, 0.99], "sticky_margin": margin,
                                              "follow_up_tokens": 0}) as g:
        c = client(g)
        history: list[dict[str, str]] = []
        served = []
        for t in turns:
            history.append({"role": "user", "content": t})
            answer = c.chat.completions.create(model="auto", messages=history)  # type: ignore[arg-type]
            served.append(answer.model)
            history.append({"role": "assistant", "content": answer.choices[0].message.content or ""})
    flips = sum(a != b for a, b in itertools.pairwise(raw))
    assert flips >= 2 and len(set(served[1:])) == 1, (raw, served)


def test_a_request_skips_backends_that_lack_what_it_needs(gw: GatewayThread) -> None:
    c = client(gw)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    answer = c.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": [{"type": "text", "text": "hi"}, image]}])  # type: ignore[list-item]
    s = smr(answer)
    assert answer.model == "flash" and s["skipped"][0].startswith("o-cheap: no image input")
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="o-cheap", messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}, image]}])  # type: ignore[list-item]
    assert err.value.code == "unsupported_request"


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FAILURES = {
    "empty": (Behaviour(reply=""), {}),
    "refusal": (Behaviour(reply="I'm sorry, but I can't help with that."), {}),
    "length": (Behaviour(reply="The first half of", finish_reason="length"), {}),
    "json": (Behaviour(reply="certainly: {broken"), {"response_format": {"type": "json_object"}}),
    "tool_schema": (Behaviour(tool_arguments='{"town": 1}'), {"tools": [WEATHER]}),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_the_cascade_escalates_on_each_failure_kind(gw: GatewayThread, fakes: ThreadedFakes, kind: str) -> None:
    behaviour, extra = FAILURES[kind]
    fakes.openai.behaviour = behaviour
    c = client(gw)
    before = fakes.gemini.stats.requests
    raw = c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of Norway?"}], **extra)
    answer = raw.parse()
    s = smr(answer)
    assert answer.model == "flash" and s["tier"] == "medium", s
    assert s["cascade"]["from_tier"] == "simple" and s["cascade"]["model"] == "o-cheap"
    assert s["cascade"]["reason"].startswith(kind) and s["cost_usd"] > s["cascade"]["cost_usd"] > 0
    assert fakes.gemini.stats.requests == before + 1
    row = logged(gw, s["request_id"])
    assert row["smr"]["cascade"]["reason"].startswith(kind)


def test_the_cascade_sends_a_good_answer_and_streams_after_the_check(gw: GatewayThread, fakes: ThreadedFakes) -> None:
    c = client(gw)
    before = fakes.gemini.stats.requests
    good = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "What is 2 + 2?"}])
    assert good.model == "o-cheap" and "cascade" not in smr(good)
    fakes.openai.behaviour = Behaviour(reply="I cannot help with that request.")
    chunks = list(c.chat.completions.create(model="auto", stream=True,
                                            messages=[{"role": "user", "content": "What is 3 + 3?"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[0].model == "flash" and "cannot" not in text and text  # the refusal never reached the client
    assert smr(chunks[0])["cascade"]["reason"] == "refusal"
    assert fakes.gemini.stats.requests == before + 1


def logged(gw: GatewayThread, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 10
    while True:
        r = httpx.get(gw.url + f"/v1/requests/{request_id}", headers=H)
        if r.status_code == 200 or time.time() > deadline:
            assert r.status_code == 200, r.text
            out: dict[str, Any] = r.json()
            return out
        time.sleep(0.05)


def test_feedback_is_kept_for_the_requests_own_tenant(gw: GatewayThread, pg_url: str) -> None:
    import psycopg

    c, other = client(gw), client(gw)
    answer = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello"}])
    rid = smr(answer)["request_id"]
    got = c.post("/feedback", body={"request_id": rid, "rating": -1, "comment": "wrong\x00"}, cast_to=httpx.Response)
    assert got.status_code == 200 and got.json()["rating"] == -1
    again = c.post("/feedback", body={"request_id": rid, "rating": 1}, cast_to=httpx.Response)
    assert again.json()["rating"] == 1  # the latest rating wins
    with pytest.raises(openai.NotFoundError):
        other.post("/feedback", body={"request_id": rid, "rating": -1}, cast_to=httpx.Response)
    with pytest.raises(openai.BadRequestError):
        c.post("/feedback", body={"request_id": rid, "rating": 5}, cast_to=httpx.Response)
    with pytest.raises(openai.BadRequestError):
        c.post("/feedback", body={"request_id": rid}, cast_to=httpx.Response)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT rating, comment FROM feedback WHERE request_id = %s", (rid,)).fetchone()
    assert row == (1, None)


def test_shadow_savings_equal_the_dry_run_sum_on_a_replayed_log(fakes: ThreadedFakes, pg_url: str) -> None:
    # The log to replay: real prompts of every difficulty.
    import json

    from router_lab.outcomes import DATA, read_text

    prompts = [json.loads(line)["prompt"] for name in ("arena_hard_v01_per_prompt.jsonl",
                                                       "alpaca_eval_per_prompt.jsonl")
               for line in read_text(DATA / "router_outcomes" / name).split("\n")[:20]]
    prompts += ["hi", "What is 2 + 2?", "thanks!"]
    reply = "A fixed answer of eleven words, for both the call and estimate."
    fakes.openai.behaviour = Behaviour(reply=reply, omit_usage=True)  # the gateway counts the tokens
    tiers = {"simple": ["o-cheap"], "medium": ["o-mid"], "complex": ["o-strong"]}
    with start(fakes, pg_url, tiers, routing={"shadow": True}) as g:
        tenant = "shadow-" + secrets.token_hex(3)
        c = client(g, tenant)
        dry_sum, tiers_seen = 0.0, set()
        for p in prompts:
            body: dict[str, Any] = {"model": "auto", "max_tokens": estimate_tokens(reply),
                                    "messages": [{"role": "user", "content": p}]}
            answer = c.chat.completions.create(**body)
            assert answer.model == "o-strong" and smr(answer)["route"] == "shadow"  # served as without routing
            dry = c.post("/route", body=body, cast_to=httpx.Response).json()
            assert smr(answer)["shadow"]["tier"] == dry["smr"]["tier"]
            dry_sum += dry["estimate"]["savings_usd"]
            tiers_seen.add(dry["smr"]["tier"])
        assert len(tiers_seen) >= 2
        deadline = time.time() + 10
        while True:
            usage = c.get("/usage?view=shadow&group_by=tenant", cast_to=httpx.Response).json()
            if (usage["data"] and usage["data"][0]["requests"] == len(prompts)) or time.time() > deadline:
                break
            time.sleep(0.1)
    (group,) = usage["data"]
    assert usage["view"] == "shadow" and group["requests"] == len(prompts)
    assert group["shadow_savings_usd"] == pytest.approx(dry_sum, rel=1e-6, abs=1e-12)
    assert group["shadow_savings_usd"] > 0 and group["shadow_cost_usd"] < group["cost_usd"]

