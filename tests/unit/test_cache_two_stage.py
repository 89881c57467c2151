"""The semantic cache's two-stage lookup (gateway/cache/service.py): the static embedding gates, MiniLM confirms.

The confirming encoder is a spy that records every text it is asked to embed; its vectors are the static
embedding's (or, where a test says so, the same vector for every text), so no model is loaded. The real
MiniLM through HTTP is tests/integration/test_cache.py's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from gateway.cache.base import CachedAnswer
from gateway.cache.guard import load_guard
from gateway.cache.memory import MemoryExactStore, MemoryVectorIndex
from gateway.cache.service import Lookup, ResponseCache
from gateway.vocab.settings import CacheSettings
from gateway.vocab.wire import ChatCompletionRequest, Message, ResponseMessage, Usage
from router_core.static_embed import StaticEmbedder

PAIRS = json.loads((Path(__file__).parents[1] / "data" / "cache_pairs.json").read_text())
ANSWER = CachedAnswer(ResponseMessage(content="cached"), "stop", Usage(1, 1, 2), "flash", "fake", "medium", "", 0)


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder()


class SpyEncoder:
    """Stands in for MiniLM: counts texts and passes; `same=True` makes every text the same vector."""

    device, backend, max_tokens = "cpu", "spy", 254

    def __init__(self, static: StaticEmbedder, same: bool = False) -> None:
        self.static, self.same, self.dim = static, same, static.dim
        self.texts: list[str] = []

    async def embed(self, text: str) -> np.ndarray:
        self.texts.append(text)
        return np.ones(self.dim, dtype=np.float32) / np.sqrt(self.dim) if self.same else self.static.embed(text)


def make_cache(static: StaticEmbedder, spy: SpyEncoder, guard: bool = True, **cfg: object) -> ResponseCache:
    settings = msgspec.structs.replace(CacheSettings(), lookup_timeout_s=5.0, **cfg)
    return ResponseCache(MemoryExactStore(), MemoryVectorIndex(), spy, load_guard() if guard else None, settings,
                         static)


def request(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="auto", messages=[Message(role="user", content=text)])


async def ask(cache: ResponseCache, text: str) -> Lookup:
    """A lookup, and on a miss the answer stored, as the request path does."""
    lk = await cache.lookup(cache.prepare("tenant", request(text), "model:auto"))
    if lk.hit is None:
        await cache._save(lk, ANSWER)
    await cache.drain()
    return lk


async def pair(cache: ResponseCache, first: str, then: str) -> Lookup:
    await ask(cache, first)
    return await ask(cache, then)


def test_a_miss_without_a_close_candidate_never_runs_minilm(static: StaticEmbedder) -> None:
    spy = SpyEncoder(static)
    cache = make_cache(static, spy)

    async def run() -> Lookup:
        await ask(cache, "How do I bake sourdough bread at home?")
        await ask(cache, "Explain the causes of the French Revolution")
        return await ask(cache, "What is the capital of Australia?")

    lk = asyncio.run(run())
    assert lk.hit is None and lk.vector is None
    assert spy.texts == [], "neither the lookups nor storing their answers ran MiniLM"
    assert cache.stats.encoder_skipped == 3 and cache.stats.encoder_runs == 0 and cache.stats.misses == 3
    assert cache.stats.stored == 3


def test_a_near_miss_the_guard_rules_reject_never_runs_minilm(static: StaticEmbedder) -> None:
    """Other numbers (bench.hotpath's stream): close by any embedding, rejected by a hard rule whatever it says."""
    spy = SpyEncoder(static)
    cache = make_cache(static, spy)

    async def run() -> list[Lookup]:
        return [await ask(cache, f"Question {i}: how do I reverse a list of {i} strings in Python?")
                for i in range(1, 6)]

    assert all(lk.hit is None for lk in asyncio.run(run()))
    assert spy.texts == []
    assert cache.stats.encoder_skipped == 5 and cache.stats.guard_rejections >= 4


def test_a_paraphrase_hits_and_each_entry_is_encoded_once(static: StaticEmbedder) -> None:
    spy = SpyEncoder(static)
    cache = make_cache(static, spy)

    async def run() -> tuple[Lookup, Lookup]:
        await ask(cache, "How do I reverse a list in Python?")
        first = await ask(cache, "How can I reverse a list in Python?")
        second = await ask(cache, "How do you reverse a list in Python?")
        return first, second

    first, second = asyncio.run(run())
    assert first.hit is not None and first.hit.kind == "hit-semantic"
    assert second.hit is not None and second.hit.kind == "hit-semantic"
    assert first.hit.similarity is not None and first.hit.similarity >= 0.92
    # The first confirmation encodes the prompt and the stored entry's; the entry keeps its vector, so the
    # second encodes the new prompt only.
    assert spy.texts == ["How can I reverse a list in Python?", "How do I reverse a list in Python?",
                         "How do you reverse a list in Python?"]
    assert cache.stats.encoder_runs == 2 and cache.stats.hits_semantic == 2


def test_the_decision_reads_minilm_not_the_gate(static: StaticEmbedder) -> None:
    """A candidate through the gate still needs MiniLM's cosine at the threshold: a confirming encoder that
    puts the two prompts far apart makes a miss, however close their static vectors are."""

    class Apart(SpyEncoder):
        async def embed(self, text: str) -> np.ndarray:
            self.texts.append(text)
            v = np.zeros(self.dim, dtype=np.float32)
            v[len(self.texts) % self.dim] = 1.0
            return v

    spy = Apart(static)
    cache = make_cache(static, spy)

    async def run() -> Lookup:
        await ask(cache, "How do I reverse a list in Python?")
        return await ask(cache, "How can I reverse a list in Python?")

    lk = asyncio.run(run())
    assert lk.hit is None and len(spy.texts) == 2 and cache.stats.encoder_runs == 1


@pytest.mark.parametrize("guard", [True, False])
def test_the_accept_decision_is_the_one_stage_rule(static: StaticEmbedder, guard: bool) -> None:
    """With the gate open (0), every hand-made pair hits exactly when the one-stage rule says so: MiniLM's
    cosine (here the spy's) at 0.92 or more, then the guard. The guard's precision is unchanged by the
    first stage: its hard rules only settle earlier what they would have rejected anyway."""
    model = load_guard()
    for kind in ("near_miss", "paraphrase"):
        for a, b in PAIRS[kind]:
            spy = SpyEncoder(static)
            cache = make_cache(static, spy, guard=guard, prefilter_similarity=0.0)
            lk = asyncio.run(pair(cache, a, b))
            cos = float(np.dot(static.embed(a), static.embed(b)))
            expected = cos >= 0.92 and (not guard or model.same_question(b, a, cos))
            assert (lk.hit is not None) == expected, (kind, a, b, cos)


def test_a_gate_above_every_candidate_is_a_miss_without_minilm(static: StaticEmbedder) -> None:
    spy = SpyEncoder(static, same=True)
    cache = make_cache(static, spy, prefilter_similarity=1.01)

    async def run() -> Lookup:
        await ask(cache, "How do I reverse a list in Python?")
        return await ask(cache, "How can I reverse a list in Python?")

    assert asyncio.run(run()).hit is None and spy.texts == []


def test_the_in_process_index_refuses_vectors_of_another_size() -> None:
    """An index of static vectors (128) never compares an older version's MiniLM vector (384)."""
    index = MemoryVectorIndex(dim=128)

    async def run() -> None:
        await index.add("t", "s", np.ones(128, dtype=np.float32), "p", b"{}", 60)
        with pytest.raises(ValueError, match="128"):
            await index.add("t", "s", np.ones(384, dtype=np.float32), "p", b"{}", 60)
        with pytest.raises(ValueError, match="128"):
            await index.search("t", "s", np.ones(384, dtype=np.float32), 3)

    asyncio.run(run())


def test_a_message_longer_than_minilm_reads_uses_the_exact_cache_only(static: StaticEmbedder) -> None:
    """MiniLM reads 254 word pieces of a message: two long messages that differ after them (the same document,
    another question at its end) would be the same to it. Such a message is neither searched nor stored in the
    index (the guard's rules alone cost 66 ms on three 100 kB candidates); the exact cache still answers it, and
    a short message still goes through the semantic layer."""
    spy = SpyEncoder(static, same=True)  # every text one vector: any candidate MiniLM is asked about would hit
    cache = make_cache(static, spy)
    doc = "The quarterly report covers revenue, costs and staffing across all of our regions. " * 30

    async def run() -> tuple[Lookup, Lookup, Lookup]:
        first = await ask(cache, doc + "Summarise it in three bullet points.")
        second = await ask(cache, doc + "Translate it into German.")
        return first, second, await ask(cache, doc + "Summarise it in three bullet points.")

    first, second, again = asyncio.run(run())
    assert first.hit is None and second.hit is None and first.long and second.long
    assert again.hit is not None and again.hit.kind == "hit-exact"
    assert spy.texts == [] and cache.stats.too_long == 2 and cache.stats.stored == 2
    assert isinstance(cache.index, MemoryVectorIndex) and not cache.index._by_key  # nothing in the index
    short = asyncio.run(ask(cache, "How do I reverse a list in Python?"))
    assert not short.long and short.static is not None and len(cache.index._by_key) == 1
    # Long in characters though few in word pieces (the static embedding reads 4,096 characters: what follows
    # would be unseen by both encoders): the exact cache only, as well.
    padded = asyncio.run(ask(cache, " " * 5000 + "How do I reverse a list in Python?"))
    unknown = asyncio.run(ask(cache, ("x" * 120 + " ") * 40 + "How do I reverse a list in Python?"))
    assert padded.long and unknown.long and cache.stats.too_long == 4 and len(cache.index._by_key) == 1


# ------------------------------------------------------------------ how a filtered KNN runs in Redis
def test_knn_policy_brute_forces_small_scopes_and_batches_a_scope_that_is_much_of_the_index() -> None:
    """The query engine left to itself brute-forced every filtered search, so a busy scope's lookups grew with
    its entries (1.3-1.6 ms of Redis CPU at 16,000; `python -m bench.semantic_index`). The cheaper of the two
    by the fitted costs: brute force for a scope that is small or a small share of the index, batches else."""
    from gateway.cache.redis_store import ADHOC, BATCHES, knn_policy

    assert knn_policy(0, 0) == ADHOC and knn_policy(0, 10_000) == ADHOC
    assert knn_policy(20, 20) == ADHOC  # a new conversation's scope: a few entries, exact and cheap
    assert knn_policy(16_000, 20_000) == BATCHES  # one system prompt's single-turn traffic
    assert knn_policy(3_000, 20_000) == BATCHES
    assert knn_policy(2_000, 2_000_000) == ADHOC  # a big scope, but a sliver of the index: batches would read it all
    assert knn_policy(100_000, 2_000_000) == BATCHES
    assert knn_policy(5_000, 10) == BATCHES  # counters within 2x of each other: never a negative share


def test_a_tenant_or_scope_tag_must_be_plain() -> None:
    """The index's TAG value joins tenant and scope with `_`: a value with anything but letters and digits could
    be read as query syntax, a glob in `clear`'s key pattern, or make two tenants' scopes one."""
    from gateway.cache.redis_store import scope_tag

    assert scope_tag("0123abcd", "ffee") == "0123abcd_ffee"
    for tenant, scope in (("a_b", "c"), ("a", "b_c"), ("t}", "s"), ("t", "s|x"), ("t*", "s"), ("", "s"), ("t", "é")):
        with pytest.raises(ValueError):
            scope_tag(tenant, scope)
