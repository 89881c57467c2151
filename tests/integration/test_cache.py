"""The response cache through the gateway: real redis-stack-server (vector search) and the in-process
store, real MiniLM embeddings, the openai SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.server import ThreadedFakes, free_port
from tests.helpers import GatewayThread, make_settings

ADMIN = "cache-admin"
PAIRS = json.loads((Path(__file__).parents[1] / "data" / "cache_pairs.json").read_text())


def cache_settings(fakes: ThreadedFakes, pg_url: str, redis_url: str, **cache: object) -> object:
    return make_settings(fakes, db_url=pg_url, redis={"url": redis_url},
                         auth={"enabled": True, "admin_key": ADMIN},
                         cache={"enabled": True, "lookup_timeout_s": 0.2, **cache})


@pytest.fixture(scope="module", params=["redis", "memory"])
def gw(request: pytest.FixtureRequest, fakes: ThreadedFakes, pg_url: str,
       redis_stack: EmbeddedRedis) -> Iterator[GatewayThread]:
    # "memory": a REDIS_URL where nothing listens, so the gateway falls back to the in-process store.
    url = redis_stack.url if request.param == "redis" else f"redis://127.0.0.1:{free_port()}/0"
    with GatewayThread(cache_settings(fakes, pg_url, url)) as g:  # type: ignore[arg-type]
        g.store = request.param  # type: ignore[attr-defined]
        yield g


def key_for(gw: GatewayThread, tenant: str) -> str:
    r = httpx.post(gw.url + "/v1/keys", json={"name": "c", "tenant": tenant},
                   headers={"Authorization": f"Bearer {ADMIN}"})
    return str(r.json()["key"])


def ask(gw: GatewayThread, key: str, prompt: str, system: str | None = None, model: str = "smr/medium",
        headers: dict[str, str] | None = None, **extra: object) -> httpx.Response:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return httpx.post(gw.url + "/v1/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": model, "messages": messages, **extra})


def scrape(gw: GatewayThread) -> dict[str, float]:
    """GET /metrics with the admin key, as {series: value}."""
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in r.text.splitlines() if line and not line.startswith("#")}


def test_metrics_count_hits_and_misses_and_need_the_admin_key(gw: GatewayThread) -> None:
    key = key_for(gw, "metrics")
    before = scrape(gw)
    ask(gw, key, "What is a metric?")
    settle(gw)
    assert ask(gw, key, "What is a metric?").headers["x-smr-cache"] == "hit-exact"
    after = scrape(gw)

    def grew(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert grew("smr_cache_hits_exact_total") == 1 and grew("smr_cache_misses_total") == 1
    assert grew('smr_requests_total{endpoint="/v1/chat/completions",status="200",tier="medium",'
                'backend="flash",cache="hit-exact"}') == 1
    assert grew('smr_request_duration_seconds_count{endpoint="/v1/chat/completions"}') == 2
    assert grew('smr_savings_usd_total{backend="flash"}') > 0 and after["smr_cache_store_up"] == 1
    assert after["smr_request_log_db_up"] == 1
    assert httpx.get(gw.url + "/metrics").status_code == 401
    denied = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {key}"})
    assert denied.status_code == 403 and denied.json()["error"]["type"]


def settle(gw: GatewayThread) -> None:
    time.sleep(0.15)  # answers are stored after the response has gone


def test_health_reports_the_store(gw: GatewayThread) -> None:
    cache = httpx.get(gw.url + "/health").json()["cache"]
    assert cache["store"] == gw.store  # type: ignore[attr-defined]
    assert cache["semantic"] is True and cache["guard"] is True


def test_exact_hit_is_free_and_skips_the_upstream(gw: GatewayThread, fakes: ThreadedFakes) -> None:
    key = key_for(gw, "exact")
    first = ask(gw, key, "Name three primary colours")
    assert first.headers["x-smr-cache"] == "miss"
    settle(gw)
    before = fakes.gemini.stats.requests
    second = ask(gw, key, "Name three primary colours")
    assert second.headers["x-smr-cache"] == "hit-exact"
    assert fakes.gemini.stats.requests == before
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert float(second.headers["x-smr-cost-usd"]) == 0
    assert float(second.headers["x-smr-savings-usd"]) > 0
    assert second.headers["x-smr-classifier"] == "cache" and second.headers["x-smr-model"] == "flash"


def test_semantic_hit_on_a_paraphrase(gw: GatewayThread) -> None:
    key = key_for(gw, "semantic")
    ask(gw, key, "How do I reverse a list in Python?")
    settle(gw)
    r = ask(gw, key, "How can I reverse a list in Python?")
    assert r.headers["x-smr-cache"] == "hit-semantic", str(httpx.get(gw.url + "/health").json()["cache"])
    assert 0.92 <= float(r.headers["x-smr-cache-similarity"]) <= 1.0
    assert "reverse a list in Python" in r.json()["choices"][0]["message"]["content"]


def test_a_miss_without_a_close_candidate_skips_minilm(gw: GatewayThread) -> None:
    """The two-stage lookup: unrelated prompts (and other numbers, which the guard rejects anyway) miss on the
    static embedding alone; /health and /metrics count the lookups that never ran MiniLM."""
    key = key_for(gw, "skip")
    before = httpx.get(gw.url + "/health").json()["cache"]
    for prompt in ("How do I bake sourdough bread?", "Explain the causes of the French Revolution",
                   "Question 7: how do I reverse a list of 7 strings in Python?", "What is the capital of Peru?",
                   "Question 8: how do I reverse a list of 8 strings in Python?"):
        assert ask(gw, key, prompt).headers["x-smr-cache"] == "miss"
        settle(gw)
    after = httpx.get(gw.url + "/health").json()["cache"]
    assert after["encoder_skipped"] - before["encoder_skipped"] == 5
    assert after["encoder_runs"] == before["encoder_runs"]
    assert scrape(gw)["smr_cache_encoder_skipped_total"] == after["encoder_skipped"]


def test_an_older_index_is_never_searched(gw: GatewayThread, redis_stack: EmbeddedRedis) -> None:
    """Version 1 indexed MiniLM vectors under smr:s:, version 2 static vectors under two TAGs (smr:s2:); this one
    (smr_semantic_v3, smr:s3:) one TAG. Old entries for the very same prompt, tenant and scope are not found, and
    `clear` removes them."""
    import redis

    from gateway.cache.keys import cache_keys, tenant_tag
    from gateway.vocab.wire import ChatCompletionRequest, Message

    if gw.store != "redis":  # type: ignore[attr-defined]
        pytest.skip("the in-process index lives and dies with its process (and refuses another vector size)")
    key = key_for(gw, "old-index")
    prompt = "What does an old cache entry look like?"
    req = ChatCompletionRequest(model="smr/medium", messages=[Message(role="user", content=prompt)])
    _, scope = cache_keys(req, "model:smr/medium")
    tag = tenant_tag("old-index")
    client = redis.Redis.from_url(redis_stack.url)
    try:
        info = client.ft("smr_semantic_v3").info()
        assert "128" in str(info["attributes"])
        client.hset(f"smr:s:{tag}:old", mapping={"tenant": tag, "scope": scope, "prompt": prompt,
                                                 "answer": b"{}", "vec": np.ones(384, np.float32).tobytes()})
        client.hset(f"smr:s2:{tag}:old", mapping={"tenant": tag, "scope": scope, "prompt": prompt,
                                                  "answer": b"{}", "vec": np.ones(128, np.float32).tobytes()})
        assert ask(gw, key, prompt.replace("What does", "What do")).headers["x-smr-cache"] == "miss"
        r = httpx.delete(gw.url + "/v1/cache?tenant=old-index", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200
        assert client.exists(f"smr:s:{tag}:old") == 0 and client.exists(f"smr:s2:{tag}:old") == 0
    finally:
        client.close()


def test_different_question_misses(gw: GatewayThread) -> None:
    key = key_for(gw, "different")
    ask(gw, key, "What is the capital of Australia?")
    settle(gw)
    assert ask(gw, key, "What is the capital of Austria?").headers["x-smr-cache"] == "miss"
    assert ask(gw, key, "How do I bake sourdough bread?").headers["x-smr-cache"] == "miss"


def test_tenants_never_share_answers(gw: GatewayThread) -> None:
    a, b = key_for(gw, "tenant-a"), key_for(gw, "tenant-b")
    ask(gw, a, "Explain what a hash map is")
    settle(gw)
    assert ask(gw, b, "Explain what a hash map is").headers["x-smr-cache"] == "miss"      # exact
    assert ask(gw, b, "Explain what a hashmap is").headers["x-smr-cache"] == "miss"       # semantic
    assert ask(gw, a, "Explain what a hash map is").headers["x-smr-cache"] == "hit-exact"


def test_other_context_never_hits(gw: GatewayThread) -> None:
    key = key_for(gw, "context")
    ask(gw, key, "Summarise this in one line", system="You are a pirate.")
    settle(gw)
    assert ask(gw, key, "Summarise this in one line", system="You are a lawyer.").headers["x-smr-cache"] == "miss"
    assert ask(gw, key, "Summarise this in one line").headers["x-smr-cache"] == "miss"
    earlier = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={
        "model": "smr/medium", "messages": [
            {"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Ahoy"}, {"role": "user", "content": "Summarise this in one line"}]})
    assert earlier.headers["x-smr-cache"] == "miss"
    assert ask(gw, key, "Summarise this in one line", system="You are a pirate.", temperature=0.0
               ).headers["x-smr-cache"] == "miss", "other sampling parameters are another context"
    assert ask(gw, key, "Summarise this in one line", system="You are a pirate.").headers["x-smr-cache"] == "hit-exact"


def test_near_miss_questions_miss_through_the_gateway(gw: GatewayThread) -> None:
    key = key_for(gw, "near-miss")
    for a, _ in PAIRS["near_miss"][:10]:
        ask(gw, key, a)
    settle(gw)
    for _, b in PAIRS["near_miss"][:10]:
        assert ask(gw, key, b).headers["x-smr-cache"] == "miss", b


def test_bypass_headers_and_uncacheable_requests(gw: GatewayThread) -> None:
    key = key_for(gw, "bypass")
    q = "List the planets of the solar system"
    assert ask(gw, key, q, headers={"Cache-Control": "no-store"}).headers["x-smr-cache"] == "miss"
    settle(gw)
    assert ask(gw, key, q).headers["x-smr-cache"] == "miss", "no-store stored nothing"
    settle(gw)
    assert ask(gw, key, q, headers={"Cache-Control": "no-cache"}).headers["x-smr-cache"] == "bypass"
    assert ask(gw, key, q, headers={"X-SMR-Cache": "off"}).headers["x-smr-cache"] == "bypass"
    assert ask(gw, key, q).headers["x-smr-cache"] == "hit-exact"
    assert ask(gw, key, q, temperature=0.9).headers["x-smr-cache"] == "bypass"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    assert ask(gw, key, q, tools=[tool]).headers["x-smr-cache"] == "bypass"


def test_streamed_replay_is_a_proper_stream(gw: GatewayThread) -> None:
    key = key_for(gw, "stream")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    msgs = [{"role": "user", "content": "Describe the water cycle briefly"}]
    fresh = list(client.chat.completions.create(model="smr/medium", messages=msgs, stream=True))
    settle(gw)
    with client.chat.completions.with_streaming_response.create(
            model="smr/medium", messages=msgs, stream=True, stream_options={"include_usage": True}) as raw:
        assert raw.headers["x-smr-cache"] == "hit-exact"
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(c.choices[0].delta.content or "" for c in fresh if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_complete_endpoint_reports_cache_hits(gw: GatewayThread) -> None:
    key = key_for(gw, "complete")
    h = {"Authorization": f"Bearer {key}"}
    first = httpx.post(gw.url + "/v1/complete", json={"prompt": "Define entropy"}, headers=h).json()
    settle(gw)
    second = httpx.post(gw.url + "/v1/complete", json={"prompt": "Define entropy"}, headers=h).json()
    assert first["cache_hit"] is False and second["cache_hit"] is True
    assert second["estimated_cost"] == 0 and second["estimated_savings"] > 0
    assert second["response"] == first["response"]


def test_admin_clears_one_tenant(gw: GatewayThread) -> None:
    a, b = key_for(gw, "clear-a"), key_for(gw, "clear-b")
    ask(gw, a, "What is a monad?")
    ask(gw, b, "What is a monad?")
    settle(gw)
    r = httpx.delete(gw.url + "/v1/cache?tenant=clear-a", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.json()["cleared"] >= 1
    assert ask(gw, a, "What is a monad?").headers["x-smr-cache"] == "miss"
    assert ask(gw, b, "What is a monad?").headers["x-smr-cache"] == "hit-exact"
    assert httpx.delete(gw.url + "/v1/cache", headers={"Authorization": f"Bearer {a}"}).status_code == 403


def test_cache_hits_are_logged(gw: GatewayThread, pg_url: str) -> None:
    import psycopg

    key = key_for(gw, f"logged-{gw.store}")  # type: ignore[attr-defined]
    ask(gw, key, "What is a closure?")
    settle(gw)
    ask(gw, key, "What is a closure?")
    deadline = time.time() + 5
    got: list[tuple[object, ...]] = []
    while time.time() < deadline and len(got) < 2:
        with psycopg.connect(pg_url) as c:
            got = c.execute("SELECT cache_status, cost_usd, savings_usd, cache_savings_usd FROM request_log "
                            "WHERE tenant = %s ORDER BY ts", (f"logged-{gw.store}",)).fetchall()  # type: ignore[attr-defined]
        time.sleep(0.05)
    assert [g[0] for g in got] == ["miss", "hit-exact"]
    assert got[1][1] == 0 and got[1][2] > 0  # type: ignore[operator]
    # Honest savings: the hit saved what the same model costs (the miss's cost); routing saved the rest.
    assert got[0][3] == 0 and abs(got[1][3] - got[0][1]) < 1e-12  # type: ignore[operator]
    report = httpx.get(gw.url + "/v1/usage", params={"group_by": "tenant"},
                       headers={"Authorization": f"Bearer {key}"}).json()["data"]
    (row,) = report
    assert abs(row["cache_savings_usd"] - got[0][1]) < 1e-12  # type: ignore[operator]
    assert abs(row["routing_savings_usd"] + row["cache_savings_usd"] - row["savings_usd"]) < 1e-12


def test_cache_command_line(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    import os
    import subprocess
    import sys

    with GatewayThread(cache_settings(fakes, pg_url, redis_stack.url)) as g:  # type: ignore[arg-type]
        key = key_for(g, "cli-cache")
        ask(g, key, "What is a B-tree?")
        settle(g)
    env = {**os.environ, "REDIS_URL": redis_stack.url, "SMR_ADMIN_KEY": "x", "DATABASE_URL": pg_url}

    def smr(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "cache", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    stats = smr("stats")
    assert "exact entries:" in stats and int(stats.split("exact entries:")[1].split()[0]) >= 1
    assert "cleared" in smr("clear", "--tenant", "cli-cache")
    assert "cleared" in smr("clear")
    assert int(smr("stats").split("exact entries:")[1].split()[0]) == 0


# ------------------------------------------------------------------ TTL, outage
def test_ttl_expiry(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis) -> None:
    with GatewayThread(cache_settings(fakes, pg_url, redis_stack.url, ttl_s=1)) as g:  # type: ignore[arg-type]
        key = key_for(g, "ttl")
        ask(g, key, "What is the speed of sound?")
        settle(g)
        assert ask(g, key, "What is the speed of sound?").headers["x-smr-cache"] == "hit-exact"
        time.sleep(1.3)
        assert ask(g, key, "What is the speed of sound?").headers["x-smr-cache"] == "miss"


def test_redis_stopped_mid_traffic_keeps_serving(fakes: ThreadedFakes, pg_url: str, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        with GatewayThread(cache_settings(fakes, pg_url, server.url, lookup_timeout_s=0.05)) as g:  # type: ignore[arg-type]
            key = key_for(g, "outage")
            ask(g, key, "What is DNS?")
            settle(g)
            assert ask(g, key, "What is DNS?").headers["x-smr-cache"] == "hit-exact"
            server.pause()  # frozen: lookups time out instead of failing fast
            started = time.perf_counter()
            for i in range(5):
                r = ask(g, key, f"What is DNS? ({i})")
                assert r.status_code == 200 and r.headers["x-smr-cache"] == "miss"
            assert (time.perf_counter() - started) / 5 < 1.0
            health = httpx.get(g.url + "/health").json()
            assert health["dependencies"]["redis"] == "unreachable" and health["status"] == "degraded"
            assert health["cache"]["timeouts"] + health["cache"]["errors"] >= 5
            metrics = scrape(g)  # the outage is visible to Prometheus too
            assert metrics["smr_cache_store_up"] == 0
            assert metrics["smr_cache_timeouts_total"] + metrics["smr_cache_errors_total"] >= 5
            assert metrics['smr_requests_total{endpoint="/v1/chat/completions",status="200",tier="medium",'
                           'backend="flash",cache="miss"}'] >= 5
            server.resume()
            time.sleep(0.3)
            assert ask(g, key, "What is DNS?").headers["x-smr-cache"] == "hit-exact"
            server.stop()  # gone for good: refused connections, still served
            assert ask(g, key, "What is DNS?").status_code == 200
    finally:
        server.stop()


def test_the_embedded_server_loads_only_the_query_engine(redis_stack: EmbeddedRedis) -> None:
    """The embedded server runs RediSearch, the one module of the stack the gateway uses: the others' hooks
    cost every command (`bench.redis_roundtrips --command-cost`). Its vector index works; JSON is not there."""
    import redis

    client = redis.Redis.from_url(redis_stack.url)
    try:
        names = {m[b"name"].decode() if isinstance(m[b"name"], bytes) else m[b"name"] for m in client.module_list()}
        assert names == {"search"}
        client.execute_command("FT.CREATE", "t_only_search", "ON", "HASH", "PREFIX", 1, "t:only:", "SCHEMA",
                               "v", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 2, "DISTANCE_METRIC", "COSINE")
        client.hset("t:only:1", mapping={"v": np.array([1, 0], dtype=np.float32).tobytes()})
        from redis.commands.search.query import Query

        found = client.ft("t_only_search").search(Query("*=>[KNN 1 @v $q]").dialect(2),
                                                  {"q": np.array([1, 0], dtype=np.float32).tobytes()})
        assert [d.id for d in found.docs] == ["t:only:1"]
        with pytest.raises(redis.ResponseError):
            client.execute_command("JSON.SET", "t:only:json", "$", "{}")
        client.execute_command("FT.DROPINDEX", "t_only_search", "DD")
    finally:
        client.close()


def test_a_wheel_of_another_layout_starts_its_own_script(tmp_path: Path) -> None:
    from gateway.cache.embedded import SEARCH_ARGS, server_command

    script = tmp_path / "bin" / "redis-stack-server"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert server_command(script) == [str(script)]  # no redis-server, no redisearch.so beside it
    (script.parent / "redis-server").write_text("")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "redisearch.so").write_text("")
    assert server_command(script) == [str(script.parent / "redis-server"), "--loadmodule",
                                      str(tmp_path / "lib" / "redisearch.so"), *SEARCH_ARGS]
