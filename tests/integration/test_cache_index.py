"""The semantic cache below the request path: the two-stage index (a static-embedding search, MiniLM to
confirm) in a real redis-stack-server, MiniLM's runtime settings, and the gate, MiniLM and the guard on the
hand-made pairs (tests/data/cache_pairs.json). The cache through the gateway: test_cache.py."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.cache.guard import load_guard
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import CacheSettings
from router_core.embedder import Embedder
from router_core.static_embed import StaticEmbedder
from tests.helpers import GatewayThread
from tests.integration.test_cache import PAIRS, ask, cache_settings, key_for, settle


def test_a_gate_no_candidate_reaches_is_a_miss_without_minilm(fakes: ThreadedFakes, pg_url: str,
                                                               redis_stack: EmbeddedRedis) -> None:
    """`cache.prefilter_similarity` is honoured: above every possible cosine, even a paraphrase misses, unconfirmed."""
    with GatewayThread(cache_settings(fakes, pg_url, redis_stack.url, prefilter_similarity=1.0)) as g:  # type: ignore[arg-type]
        key = key_for(g, "gate")
        ask(g, key, "How do I reverse a list in Python?")
        settle(g)
        assert ask(g, key, "How can I reverse a list in Python?").headers["x-smr-cache"] == "miss"
        cache = httpx.get(g.url + "/health").json()["cache"]
        assert cache["encoder_runs"] == 0 and cache["encoder_skipped"] == 2


def test_the_redis_index_keeps_an_entrys_minilm_vector(redis_stack: EmbeddedRedis) -> None:
    """An entry's MiniLM vector, attached by the lookup that first needed it, comes back with the entry (bytes
    intact); attaching to an entry that has expired does not bring it back as a key without a TTL."""
    import asyncio

    from gateway.cache.redis_store import RedisVectorIndex, connect

    async def run() -> None:
        client = connect(redis_stack.url, 1.0)
        try:
            index = await RedisVectorIndex.open(client, 128)
            assert index is not None
            v = np.full(128, 128 ** -0.5, dtype=np.float32)
            await index.add("attach", "scope", v, "a prompt", b"{}", 60)
            (found,) = await index.search("attach", "scope", v, 3)
            assert found.confirm is None and found.key.startswith("smr:s3:attach:")
            minilm = np.linspace(-1, 1, 384, dtype=np.float32)
            await index.attach(found.key, minilm)
            (again,) = await index.search("attach", "scope", v, 3)
            assert again.confirm is not None and np.array_equal(again.confirm, minilm)
            assert 0 < await client.ttl(found.key) <= 60
            await index.attach("smr:s3:attach:expired", minilm)
            assert await client.exists("smr:s3:attach:expired") == 0
            await index.clear("attach")
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_busy_scope_is_searched_in_batches_and_still_finds_its_nearest(redis_stack: EmbeddedRedis) -> None:
    """A scope holding most of the index (one system prompt's single-turn traffic) is searched with HNSW in
    batches once the entry counters say so, a small one by brute force; both find the nearest entry, one
    tenant's search never returns another's entries, and clearing a tenant clears its counters too."""
    import asyncio
    import secrets

    from gateway.cache.redis_store import ADHOC, BATCHES, COUNT_PREFIX, RedisVectorIndex, connect
    from router_core.static_embed import StaticEmbedder

    dim = StaticEmbedder().dim  # the gateway's index in this shared server
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1500, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    busy, small, other = (secrets.token_hex(8) for _ in range(3))

    async def run() -> None:
        client = connect(redis_stack.url, 1.0)
        try:
            index = await RedisVectorIndex.open(client, dim, window_s=600)
            assert index is not None
            for start in range(0, len(vectors), 100):
                await asyncio.gather(*(index.add(busy, "s", v, f"busy {start + i}", b"{}", 600)
                                       for i, v in enumerate(vectors[start:start + 100])))
            for i, v in enumerate(vectors[:3]):
                await index.add(small, "s", v, f"small {i}", b"{}", 600)
            await index.add(other, "s", vectors[42], "another tenant's", b"{}", 600)
            assert index.policy(busy, "s") == ADHOC  # nothing known yet in this process: the exact search
            for probe in (42, 1234, 42):
                query = vectors[probe] + 0.01 * rng.normal(size=dim).astype(np.float32)
                found = await index.search(busy, "s", query / np.linalg.norm(query), 3)
                assert found[0].prompt == f"busy {probe}" and len(found) == 3
                assert index.policy(busy, "s") == BATCHES  # the counters read with the search: 1,500 entries
            found = await index.search(small, "s", vectors[1], 3)
            assert [c.prompt for c in found][:1] == ["small 1"] and len(found) == 3
            assert index.policy(small, "s") == ADHOC
            assert [c.prompt for c in await index.search(other, "s", vectors[42], 3)] == ["another tenant's"]
            await index.clear(busy)
            assert [k async for k in client.scan_iter(match=f"{COUNT_PREFIX}{busy}_*")] == []
            assert await index.search(busy, "s", vectors[42], 3) == []
            assert index.policy(busy, "s") == ADHOC
            await index.clear(small)
            await index.clear(other)
        finally:
            await client.aclose()

    asyncio.run(run())


# ------------------------------------------------------------------ the guard on the hand-made pairs
@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder().load()


def _pair_hits(embedder: Embedder, pairs: list[list[str]]) -> list[bool]:
    """As serving decides: the static cosine through the default gate, then MiniLM's at 0.92, then the guard."""
    guard, static, gate = load_guard(), StaticEmbedder(), CacheSettings().prefilter_similarity
    a = embedder.encode_batch([p[0] for p in pairs])
    b = embedder.encode_batch([p[1] for p in pairs])
    cos = np.sum(a * b, axis=1)
    near = np.sum(static.embed_batch([p[0] for p in pairs]) * static.embed_batch([p[1] for p in pairs]), axis=1)
    return [float(s) >= gate and float(c) >= 0.92 and guard.same_question(x, y, float(c))
            for (x, y), c, s in zip(pairs, cos, near, strict=True)]


def test_all_hand_made_near_misses_miss(embedder: Embedder) -> None:
    assert len(PAIRS["near_miss"]) >= 50
    hits = _pair_hits(embedder, PAIRS["near_miss"])
    assert [p for p, h in zip(PAIRS["near_miss"], hits, strict=True) if h] == []


def test_hand_made_paraphrases_mostly_hit(embedder: Embedder) -> None:
    assert len(PAIRS["paraphrase"]) >= 50
    hits = _pair_hits(embedder, PAIRS["paraphrase"])
    assert sum(hits) >= 0.85 * len(hits), f"only {sum(hits)} of {len(hits)} paraphrases hit"


def test_the_embedder_does_not_spin_threads_while_idle(embedder: Embedder) -> None:
    """Issue 27: onnxruntime's default intra-op pool (one thread per core) spins after every pass, which
    cost the default configuration ~30 ms of CPU per cache miss on 2 cores; one pass at a time on the
    embedder's own thread, never spinning, is what serving runs."""
    assert embedder.backend == "onnx"
    opts = embedder._onnx.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_an_index_made_for_vectors_of_another_size_turns_the_semantic_cache_off_with_one_error(
        redis_stack: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Before, a gateway adopted such an index and every semantic lookup then failed ("query vector blob size
    (512) does not match index's expected size (16)"), one counted error per request."""
    import asyncio
    import secrets

    from gateway.cache import redis_store

    name = f"smr_semantic_test_{secrets.token_hex(4)}"
    monkeypatch.setattr(redis_store, "INDEX", name)  # an index of this test's own, over keys of its own
    monkeypatch.setattr(redis_store, "SEM_PREFIX", f"smr:test:{name}:")

    async def run() -> None:
        client = redis_store.connect(redis_stack.url, 1.0)
        try:
            assert await redis_store.RedisVectorIndex.open(client, 4) is not None
            assert await redis_store.RedisVectorIndex.open(client, 4) is not None  # the same size: adopted
            assert await redis_store.RedisVectorIndex.open(client, 128, "the test's Redis") is None
        finally:
            await client.ft(name).dropindex()
            await client.aclose()

    asyncio.run(run())
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert f"the index {name} holds vectors of another size" in error and "semantic cache off" in error
