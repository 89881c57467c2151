"""Sampled second opinions (issue 26): a share of `auto` answers is also asked of the reference tier, off the
request path, and judged; the judgements are stored in Postgres and tune the router
(`smr train --from-judgements`, `smr calibrate --from-logs --target-quality` and `smr eval --from-logs`).

The upstreams are the fakes: the weak model (`fail_hard`) gets every multi-step maths or code request
wrong, the judge (`judge`) prefers the other answer exactly there, and calls everything else a tie."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
import redis

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.common import Behaviour, hard_request
from gateway.fakes.server import ThreadedFakes, free_port
from gateway.learning.curve import apgr, curve, cutoff_for_quality, quality_at
from gateway.learning.judge import parse_verdict, rule_verdict, served_first
from gateway.learning.sampler import day_keys, sampled
from gateway.vocab.settings import Backend, Settings
from gateway.vocab.settings_model import LearningSettings
from gateway.vocab.wire import ChatCompletionRequest, ResponseMessage
from router_lab.outcomes import DATA, read_text
from tests.helpers import GatewayThread, make_settings, rows, wait_for_rows

EASY = "What is the capital of France?"
TIERS = {"simple": ["local"], "medium": ["local"], "complex": ["pro"]}


def learning_settings(fakes: ThreadedFakes, pg_url: str, redis_url: str | None, routing: dict[str, Any] | None = None,
                      **learning: Any) -> Settings:
    cfg = {"sample_rate": 1.0, "judge": "oai", "budget_usd_per_day": 1000.0, **learning}
    sections: dict[str, Any] = {"routing": routing} if routing else {}
    return make_settings(fakes, db_url=pg_url, tiers=TIERS, redis={"url": redis_url}, learning=cfg, **sections)


def ask(gw: GatewayThread, prompts: list[str]) -> list[str]:
    """Each prompt once through HTTP as `auto`; the request ids, after checking every answer is a 200."""
    ids = []
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for p in prompts:
            body = {"model": "auto", "messages": [{"role": "user", "content": p}]}
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            ids.append("req_" + r.json()["id"].removeprefix("chatcmpl-"))
    return ids


def judged(pg_url: str, ids: list[str]) -> list[tuple[Any, ...]]:
    return rows(pg_url, "SELECT request_id, verdict, judge, prompt, tier, reference_tier, cost_usd FROM judgements "
                        "WHERE request_id = ANY(%s)", (ids,))


def wait_judged(pg_url: str, ids: list[str], n: int, timeout: float = 60) -> list[tuple[Any, ...]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = judged(pg_url, ids)
        if len(found) >= n:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(judged(pg_url, ids))} of {n} judgements")


def learner_stats(gw: GatewayThread) -> Any:
    return gw.server.config.app.state.gateway.learning.stats  # type: ignore[union-attr]


def short_pauses(gw: GatewayThread) -> None:
    """A paused job waits out the outage in shorter steps (the same three waits, then dropped and counted):
    these tests see an outage that does not end, where 3.5 s a job is waiting and nothing else."""
    app: Any = gw.server.config.app
    app.state.gateway.learning.pause_waits_s = (0.01, 0.02, 0.04)


def wait_settled(gw: GatewayThread, n: int, timeout: float = 30) -> Any:
    """The learner's counters once all `n` sampled jobs have been taken off its queue and decided."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = learner_stats(gw)
        if s.sampled >= n and s.dropped + s.capped + s.paused + s.judged + s.unjudged + s.failed >= n:
            return s
        time.sleep(0.05)
    raise AssertionError(f"learner did not settle: {learner_stats(gw)}")


# ---------------------------------------------------------------------------------------------- pure parts
def test_sampling_is_a_pure_share_of_auto_answers_below_the_reference() -> None:
    on = LearningSettings(sample_rate=0.3, exclude_tenants=["private"])
    ids = [f"req_{i:06d}" for i in range(4000)]
    share = sum(sampled(on, i, "t", "auto", "simple") for i in ids) / len(ids)
    assert abs(share - 0.3) < 0.03
    assert not any(sampled(LearningSettings(), i, "t", "auto", "simple") for i in ids)  # rate 0: nothing
    assert not any(sampled(on, i, "private", "auto", "simple") for i in ids)  # an excluded tenant
    assert not any(sampled(on, i, "t", "forced", "simple") for i in ids)  # only `auto` is routed
    assert not any(sampled(on, i, "t", "auto", "complex") for i in ids)  # the reference itself: nothing to compare
    assert not any(sampled(on, i, "t", "auto", "simple", prompt_tokens=8001) for i in ids)  # too big to hold
    assert day_keys("a", dt.datetime(2026, 1, 2, tzinfo=dt.UTC)) == ("smr:learning:spend:20260102",
                                                                     "smr:learning:spend:20260102:a")


def test_rule_judge_decides_where_the_request_is_checkable() -> None:
    b = Backend(name="x", provider="openai", model="m")

    def req(text: str, **extra: Any) -> ChatCompletionRequest:
        return msgspec.convert({"messages": [{"role": "user", "content": text}], **extra}, ChatCompletionRequest)

    def msg(text: str) -> ResponseMessage:
        return ResponseMessage(content=text)

    fmt = {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}}}}
    assert rule_verdict(req("give n", **fmt), msg('{"n": "x"}'), msg('{"n": 3}'), b, b) == ("reference", "rule:json")
    assert rule_verdict(req("give n", **fmt), msg('{"n": 2}'), msg('{"n": 3}'), b, b) == ("tie", "rule:json")
    assert rule_verdict(req("What is 12*7?"), msg("It is 84."), msg("12*7 = 84"), b, b) == ("tie", "rule:number")
    assert rule_verdict(req("What is 12*7?"), msg("It is 74."), msg("12*7 = 84"), b, b) == ("reference",
                                                                                            "rule:number")
    assert rule_verdict(req("Tell me a story"), msg(""), msg("Once..."), b, b) == ("reference", "rule:empty")
    assert rule_verdict(req("Tell me a story"), msg("A tale"), msg("Once..."), b, b) is None  # the model judge's
    for first in (True, False):  # the served answer's position does not decide the verdict
        a_wins = "[[A]]"
        assert parse_verdict(f"because. {a_wins}", first) == ("served" if first else "reference")
        assert parse_verdict("[[C]]", first) == "tie" and parse_verdict("no verdict", first) is None
    assert {served_first(f"req_{i}") for i in range(20)} == {True, False}


def test_curve_apgr_and_the_cutoff_for_a_target_quality() -> None:
    weak = np.array([0.0] * 25 + [1.0] * 75)  # a quarter need the reference
    strong = np.ones(100)
    assert apgr(np.full(100, 0.5), weak, strong) == pytest.approx(0.5, abs=0.01)  # cannot tell: 0.5
    perfect = np.concatenate([np.linspace(0.9, 0.8, 25), np.linspace(0.5, 0.1, 75)])
    assert apgr(perfect, weak, strong) > 0.87
    assert curve(perfect, weak, strong)[0] == pytest.approx(0.75) and curve(perfect, weak, strong)[25] == 1.0
    cut = cutoff_for_quality(perfect, weak, strong, 0.95)
    q, up = quality_at(perfect, weak, strong, cut)
    assert 0.95 <= q < 0.97 and up < 0.25  # the target at least cost


# ---------------------------------------------------------------------------------------------- the gateway
def test_nothing_sampled_at_rate_0_and_no_prompt_kept(fakes: ThreadedFakes, pg_url: str,
                                                      redis_stack: EmbeddedRedis) -> None:
    calls = fakes.gemini.stats.requests  # the reference tier's backend (the fakes' stats are per session)
    settings = learning_settings(fakes, pg_url, redis_stack.url, sample_rate=0.0)
    with GatewayThread(settings) as gw:
        assert gw.server.config.app.state.gateway.learning is None  # type: ignore[union-attr]
        ids = ask(gw, [EASY] * 5)
        wait_for_rows(pg_url, "request_id = ANY(%s)", 5, (ids,))
    assert fakes.gemini.stats.requests == calls  # no reference call
    assert judged(pg_url, ids) == []
    assert rows(pg_url, "SELECT count(*) FROM request_log WHERE request_id = ANY(%s) AND prompt IS NOT NULL",
                (ids,))[0][0] == 0
    assert rows(pg_url, "SELECT count(*) FROM request_log WHERE client_request_id = ANY(%s)", (ids,))[0][0] == 0


def test_sampled_answers_are_judged_logged_as_learning_and_kept_across_a_restart(
        fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    fakes.ollama.behaviour = Behaviour(fail_hard=True)
    fakes.openai.behaviour = Behaviour(judge=True)
    settings = learning_settings(fakes, pg_url, redis_stack.url)
    hard, easy = "Write a function to reverse a list.", "Who wrote the novel Emma?"
    window = {"group_by": "all", "from": dt.datetime.now(dt.UTC).isoformat()}
    with GatewayThread(settings) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [
            {"role": "user", "content": hard}]})
        assert r.status_code == 200 and "Simulated wrong answer" in r.text and "judge" not in r.text.lower()
        ids = ["req_" + r.json()["id"].removeprefix("chatcmpl-"), *ask(gw, [easy])]
        found = {j[0]: j for j in wait_judged(pg_url, ids, 2)}
        # /v1/usage counts learning's calls apart (view=learning), never in the traffic served
        deadline = time.time() + 10
        while True:
            served = httpx.get(gw.url + "/v1/usage", params=window).json()["data"]
            spent = httpx.get(gw.url + "/v1/usage", params={**window, "view": "learning"}).json()["data"]
            if (served and served[0]["requests"] >= 2 and spent and spent[0]["requests"] >= 3) or \
                    time.time() > deadline:
                break
            time.sleep(0.1)
        assert served[0]["requests"] == 2 and spent[0]["requests"] >= 3 and spent[0]["cost_usd"] > 0
    assert found[ids[0]][1:3] == ("reference", "model:oai") and found[ids[1]][1:3] == ("tie", "model:oai")
    assert found[ids[0]][3] == f"user: {hard}" and found[ids[0]][5] == "complex"  # served by `local`
    learning: list[tuple[Any, ...]] = rows(
        pg_url, "SELECT requested_model, backend, cost_usd, tenant, prompt FROM request_log "
                "WHERE endpoint = 'learning' AND client_request_id = %s ORDER BY requested_model", (ids[0],))
    assert [(m, b) for m, b, *_ in learning] == [("learning:judge", "oai"), ("learning:reference", "pro")]
    assert all(c > 0 and t is None and p is None for _, _, c, t, p in learning)  # priced; no tenant's bill
    assert found[ids[0]][6] == pytest.approx(sum(c for _, _, c, _, _ in learning), rel=1e-6)
    # The client's own row carries no prompt (log.prompts is off): the judgement alone keeps it.
    assert rows(pg_url, "SELECT prompt FROM request_log WHERE request_id = %s", (ids[0],)) == [(None,)]
    with GatewayThread(settings) as gw:  # a restart: the judgements are in Postgres
        more = ask(gw, [easy])
        wait_judged(pg_url, more, 1)
    assert len(judged(pg_url, ids + more)) == 3


def test_a_streamed_auto_answer_is_sampled_and_judged_with_its_assembled_text(
        fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    fakes.ollama.behaviour = Behaviour(fail_hard=True)
    fakes.openai.behaviour = Behaviour(judge=True)
    hard = "Write a function to merge two sorted lists."
    with GatewayThread(learning_settings(fakes, pg_url, redis_stack.url)) as gw:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": hard}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30) as r:
            text = "".join(r.iter_text())
        assert r.status_code == 200 and "data: [DONE]" in text and "judge" not in text.lower()
        chunk = json.loads(text.split("data: ", 2)[1].split("\n", 1)[0])
        ids = ["req_" + chunk["id"].removeprefix("chatcmpl-")]
        found = wait_judged(pg_url, ids, 1)
    # the judge saw the streamed (wrong) answer, assembled: it prefers the reference's
    assert found[0][1:3] == ("reference", "model:oai") and found[0][3] == f"user: {hard}"


def test_the_learning_cap_stops_sampling(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    calls = fakes.gemini.stats.requests  # the reference tier's backend (the fakes' stats are per session)
    fakes.openai.behaviour = Behaviour(judge=True)
    with GatewayThread(learning_settings(fakes, pg_url, redis_stack.url, budget_usd_per_day=0.0)) as gw:
        ids = ask(gw, [EASY] * 4)
        stats = wait_settled(gw, 4)
    assert stats.capped == 4 and judged(pg_url, ids) == [] and fakes.gemini.stats.requests == calls
    # A tenant's cap: the first sampled request spends past it, the rest wait for tomorrow (UTC).
    redis.Redis.from_url(redis_stack.url).delete(day_keys("default")[1])
    with GatewayThread(learning_settings(fakes, pg_url, redis_stack.url, tenant_budget_usd_per_day=1e-12)) as gw:
        ids = ask(gw, [EASY] * 4)
        stats = wait_settled(gw, 4)
    assert (stats.judged, stats.capped) == (1, 3) and len(judged(pg_url, ids)) == 1
    assert fakes.gemini.stats.requests == calls + 1


def test_an_outage_pauses_learning_without_errors(fakes: ThreadedFakes, pg_url: str) -> None:
    calls = fakes.gemini.stats.requests  # the reference tier's backend (the fakes' stats are per session)
    fakes.openai.behaviour = Behaviour(judge=True)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # Redis down: the caps cannot be held, so nothing is spent
    with GatewayThread(learning_settings(fakes, pg_url, dead)) as gw:
        short_pauses(gw)
        ids = ask(gw, [EASY] * 3)  # every answer a 200
        stats = wait_settled(gw, 3)
    assert stats.paused == 3 and stats.failed == 0 and judged(pg_url, ids) == []
    assert fakes.gemini.stats.requests == calls


def test_a_circuit_open_on_the_reference_pauses_learning(fakes: ThreadedFakes, pg_url: str,
                                                         redis_stack: EmbeddedRedis) -> None:
    calls = fakes.gemini.stats.requests  # the reference tier's backend (the fakes' stats are per session)
    with GatewayThread(learning_settings(fakes, pg_url, redis_stack.url)) as gw:
        breakers = gw.server.config.app.state.gateway.breakers  # type: ignore[union-attr]
        for _ in range(breakers.threshold):
            breakers.failure("pro")
        short_pauses(gw)
        ids = ask(gw, [EASY] * 2)
        stats = wait_settled(gw, 2)
    assert stats.paused == 2 and judged(pg_url, ids) == [] and fakes.gemini.stats.requests == calls


# ---------------------------------------------------------------------------------------------- end to end
def kinds() -> tuple[list[str], list[str]]:
    """Multi-step maths and code requests (the weak fake fails them), and factual questions (it does not)."""
    rows_ = [json.loads(line) for line in read_text(DATA / "router_outcomes" / "llmrouter_dcrouter_per_prompt.jsonl")
             .split("\n") if line]
    hard = [r["prompt"] for r in rows_ if r["source"] in ("llmrouter/math", "llmrouter/mbpp")
            and hard_request(r["prompt"]) and 40 <= len(r["prompt"]) < 1500]
    easy = [r["prompt"] for r in rows_ if r["source"] in ("llmrouter/natural_qa", "llmrouter/trivia_qa",
                                                          "llmrouter/commonsense_qa")
            and not hard_request(r["prompt"]) and len(r["prompt"]) >= 40]  # shorter: the classifier declines
    rng = random.Random(26)
    rng.shuffle(hard)
    rng.shuffle(easy)
    return hard, easy


def mixed(hard: list[str], easy: list[str]) -> list[str]:
    out = hard + easy
    random.Random(len(out)).shuffle(out)
    return out


def judged_cli(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": pg_url, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                         env=env, timeout=300)
    print(out.stdout, out.stderr[-2000:])
    assert out.returncode == 0, out.stderr
    return out


def pair(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    (simple,) = [p for p in result["pairs"] if p["pair"] == "simple->complex"]
    return simple


def test_judgements_teach_a_router_that_cannot_tell_to_keep_a_target_quality(
        fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis, tmp_path: Path) -> None:
    from router_core.difficulty import HEAD_PATHS, load_head

    # The router starts unable to tell: a difficulty head with no weights scores every request the same.
    packaged = load_head(HEAD_PATHS["static"])
    blind = tmp_path / "blind.json"
    blind.write_text(json.dumps(msgspec.to_builtins(msgspec.structs.replace(
        packaged, weights=[0.0] * len(packaged.weights), cv={}))))
    routing = {"classifiers": ["difficulty"], "difficulty_embedding": "static", "difficulty_head": str(blind),
               "cutoffs": [0.999, 0.9995]}  # everything on the cheap tier, so every answer is judged
    before = tmp_path / "before.toml"
    before.write_text(f'[routing]\nclassifiers = ["difficulty"]\ndifficulty_embedding = "static"\n'
                      f'difficulty_head = "{blind}"\ncutoffs = [0.999, 0.9995]\nbaseline = "pro"\n'
                      '[tiers]\nsimple = ["local"]\nmedium = ["local"]\ncomplex = ["pro"]\n'
                      '[[backends]]\nname = "local"\nprovider = "ollama"\nmodel = "granite4:350m"\n'
                      'base_url = "http://127.0.0.1:9"\n'
                      '[[backends]]\nname = "pro"\nprovider = "gemini"\nmodel = "gemini-2.5-pro"\n'
                      'input_price = 1.25\noutput_price = 10.0\n')
    fakes.ollama.behaviour = Behaviour(fail_hard=True)
    fakes.openai.behaviour = Behaviour(judge=True)
    hard, easy = kinds()
    train, fresh = mixed(hard[:75], easy[:225]), mixed(hard[75:175], easy[225:525])
    with GatewayThread(learning_settings(fakes, pg_url, redis_stack.url, routing=routing)) as gw:
        t0 = dt.datetime.now(dt.UTC).isoformat()
        ids = ask(gw, train)
        wait_settled(gw, len(train), timeout=300)
        t1 = dt.datetime.now(dt.UTC).isoformat()
        fresh_ids = ask(gw, fresh)
        stats = wait_settled(gw, len(train) + len(fresh), timeout=300)
        t2 = dt.datetime.now(dt.UTC).isoformat()
    # Every answer sampled; on a loaded machine a few may be dropped while the log's database is slow.
    assert stats.judged >= 0.95 * (len(train) + len(fresh)) and stats.failed == 0, stats
    assert len(judged(pg_url, ids)) >= 0.95 * len(train)
    fresh_judged = len(judged(pg_url, fresh_ids))
    window = ["--tenant", "default", "--since", t0, "--until", t1]
    fresh_window = ["--tenant", "default", "--since", t1, "--until", t2]
    start = pair(judged_cli(pg_url, "eval", "--from-logs", "--config", str(before), *fresh_window, "--json"))
    assert start["judged"] == fresh_judged and abs(start["apgr"] - 0.5) < 0.02  # cannot tell: about 0.5
    head = tmp_path / "head.json"
    judged_cli(pg_url, "train", "--from-judgements", "--config", str(before), *window, "--write", str(head))
    after = tmp_path / "after.toml"
    after.write_text(before.read_text().replace(str(blind), str(head)))
    cal = judged_cli(pg_url, "calibrate", "--from-logs", "--target-quality", "0.95", "--config", str(after),
                     *window, "--write", str(after), "--json")
    assert "cutoffs = [" in after.read_text() and json.loads(cal.stdout.strip().splitlines()[-1])["cutoffs"]
    end = pair(judged_cli(pg_url, "eval", "--from-logs", "--config", str(after), *fresh_window, "--json"))
    assert end["apgr"] >= 0.8, end
    assert abs(end["quality_at_cutoff"] - 0.95) <= 0.03, end  # the target held on traffic it never saw


def test_cache_checks_take_the_same_draw_and_judges() -> None:
    from gateway.fakes.common import judge_reply
    from gateway.learning.cache_checks import check_verdict, checked

    on = LearningSettings(sample_rate=0.3, exclude_tenants=["private"])
    ids = [f"req_{i:06d}" for i in range(2000)]
    assert [checked(on, i, "t") for i in ids] == [sampled(on, i, "t", "auto", "simple") for i in ids]
    assert not any(checked(on, i, "private") for i in ids)
    assert not any(checked(LearningSettings(), i, None) for i in ids)
    assert [check_verdict(v) for v in ("served", "tie", "reference", None)] == ["right", "right", "wrong", "unsure"]
    # the fake judge's near misses: the answer with the request's own key words wins
    prompt = ("[Request]\nExplain gravity in technical terms\n[Answer A]\nSimulated answer to: Explain gravity "
              "in simple terms\n[Answer B]\nSimulated answer to: Explain gravity in technical terms\n"
              "Reply with [[A]], [[B]] or [[C]]")
    assert judge_reply(prompt, ("technical",)).endswith("[[B]]")
    assert judge_reply(prompt).endswith("[[C]]")
