"""Where a semantic-cache miss's CPU goes, part by part, in one process against an embedded redis-stack-server.

    python -m bench.hotpath_parts [--entries 1000] [--calls 300] [--smoke]

Each part is called `--calls` times, one call at a time with a 5 ms pause between calls (as at one
connection, where the gateway waits on the upstream between two embeddings: what a spinning thread pool
burns then counts). CPU is this process's (all its threads) plus the Redis server's, per call; wall time
is the call's own; the cost of the pauses alone is measured first and taken off. Redis's CPU is read
in clock ticks (10 ms), so its column is coarse at a few hundred calls. The parts: the MiniLM embedding with onnxruntime's default session options (one
intra-op thread per core, spinning) and with the shipped ones (one thread, no spinning); the static
embedding for comparison; the exact-key GET; the HNSW search (k = 3, the lookup's) in an index of
`--entries` prompts of the same tenant and scope; the guard on three near candidates; storing one entry.
The index holds the static embedding (128 d) since the two-stage lookup; the last rows are whole semantic
lookups through `ResponseCache.lookup` as serving runs them (exact GET, static embedding, search, the gate,
MiniLM only when a candidate passes it): a miss whose near candidates the guard's rules reject (bench.hotpath's
stream), a miss on an unrelated prompt (data/router_outcomes' chat prompts), and a semantic hit on a
paraphrase whose entry already has its MiniLM vector.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from bench.hotpath import libssl_env
from bench.studies.cache_embedding import chat_prompts
from gateway.cache.base import CachedAnswer, answer_encoder
from gateway.cache.embedded import EmbeddedRedis
from gateway.cache.guard import load_guard
from gateway.cache.redis_store import RedisExactStore, RedisVectorIndex, connect
from gateway.cache.service import Lookup, ResponseCache
from gateway.vocab.settings import CacheSettings
from gateway.vocab.wire import ResponseMessage, Usage
from router_core.embedder import Embedder
from router_core.static_embed import StaticEmbedder

PAUSE_S = 0.005
TENANT, SCOPE = "0123456789abcdef", "fedcba9876543210"
OTHER_SCOPE, HIT_SCOPE = "00000000000000000000000000000001", "00000000000000000000000000000002"


def prompt(i: int) -> str:
    return f"Question {i}: how do I reverse a list of {i} strings in Python?"


class Meter:
    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)

    def cpu(self) -> tuple[float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        s = self.server.cpu_times()
        return r.ru_utime + r.ru_stime, s.user + s.system

    async def measure(self, calls: int, part: Callable[[int], Awaitable[object]]) -> tuple[float, float, float]:
        """(process CPU us, server CPU us, wall us) per call."""
        for i in range(5):
            await part(-1 - i)
        (c0, s0), wall = self.cpu(), 0.0
        for i in range(calls):
            t = time.perf_counter()
            await part(i)
            wall += time.perf_counter() - t
            await asyncio.sleep(PAUSE_S)
        c1, s1 = self.cpu()
        return (c1 - c0) * 1e6 / calls, (s1 - s0) * 1e6 / calls, wall * 1e6 / calls


def default_session(embedder: Embedder) -> object:
    """The same model in a session with onnxruntime's defaults (what the gateway ran before issue 27)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(embedder._onnx.onnx_path), opts, providers=["CPUExecutionProvider"])


async def parts(entries: int, calls: int) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="smr-parts-"))
    env = libssl_env()
    server = EmbeddedRedis(tmp, env.get("SMR_LIBSSL11_DIR"))
    server.start()
    client = connect(server.url, 1.0)
    try:
        assert server.proc is not None
        meter = Meter(server.proc.pid)
        embedder = Embedder(backend="onnx").load()
        static = StaticEmbedder()
        guard = load_guard()
        exact = RedisExactStore(client, server.url, owns_client=False)
        index = await RedisVectorIndex.open(client, static.dim, server.url)
        assert index is not None
        vectors = static.embed_batch([prompt(i) for i in range(entries)])
        answer = answer_encoder.encode(CachedAnswer(ResponseMessage(content="..."), "stop", Usage(1, 1, 2), "b", "p",
                                                    None, "", 0))
        for i in range(entries):
            await index.add(TENANT, SCOPE, vectors[i], prompt(i), answer, 3600)
        unrelated = chat_prompts()
        # The lookups' prompts are never in the index (more entries than the set leaves for them: fewer stored):
        # a stored prompt would come back as its own candidate and run MiniLM, which this row says it does not.
        stored_unrelated = max(0, min(entries, len(unrelated) - calls - 5))
        for text in unrelated[:stored_unrelated]:
            await index.add(TENANT, OTHER_SCOPE, static.embed(text), text, answer, 3600)
        stored = "How do I reverse a list in Python?"
        await index.add(TENANT, HIT_SCOPE, static.embed(stored), stored, answer, 3600,
                        embedder.encode_batch([stored])[0])
        query = static.embed(prompt(entries + 1))
        found = await index.search(TENANT, SCOPE, query, 3)
        cache = ResponseCache(exact, index, embedder, guard, CacheSettings(lookup_timeout_s=5.0), static)

        async def embed(i: int) -> object:
            return embedder.encode_batch([prompt(100_000 + i)])

        async def embed_static(i: int) -> object:
            return static.embed(prompt(100_000 + i))

        async def get(i: int) -> object:
            return await exact.get(f"smr:x:{TENANT}:{i}")

        async def search(i: int) -> object:
            return await index.search(TENANT, SCOPE, query, 3)

        async def judge(i: int) -> object:
            return [guard.same_question(prompt(100_000 + i), c.prompt, c.similarity) for c in found]

        async def add(i: int) -> object:
            await index.add(TENANT, SCOPE, query, prompt(200_000 + i), b'{"answer": "..."}', 60)
            return None

        def lookup(scope: str, text: str) -> Awaitable[Lookup]:
            return cache.lookup(Lookup(TENANT, f"smr:x:{TENANT}:{text}", scope, text))

        async def miss_rules(i: int) -> object:
            return await lookup(SCOPE, prompt(300_000 + i))

        async def miss_unrelated(i: int) -> object:
            return await lookup(OTHER_SCOPE, unrelated[(stored_unrelated + 5 + i) % len(unrelated)])

        async def hit(i: int) -> object:
            lk = await lookup(HIT_SCOPE, "How can I reverse a list in Python?")
            assert lk.hit is not None
            return lk

        async def nothing(i: int) -> object:
            return None

        shipped = embedder._onnx.session
        rows: dict[str, tuple[float, float, float]] = {}
        base = await meter.measure(calls, nothing)  # the pauses' own cost, taken off every row
        embedder._onnx.session = default_session(embedder)
        rows["MiniLM embedding, onnxruntime defaults (before)"] = await meter.measure(calls, embed)
        embedder._onnx.session = shipped
        rows["MiniLM embedding, one thread, no spinning (shipped)"] = await meter.measure(calls, embed)
        rows["static embedding (the difficulty classifier's)"] = await meter.measure(calls, embed_static)
        rows["exact-key GET (a miss)"] = await meter.measure(calls, get)
        rows[f"HNSW search, k = 3, {entries:,} entries in the scope"] = await meter.measure(calls, search)
        rows[f"guard on {len(found)} near candidates"] = await meter.measure(calls, judge)
        rows["storing one entry (HSET + EXPIRE, after the response)"] = await meter.measure(calls, add)
        rows["lookup, a miss: near candidates the guard's rules reject (no MiniLM)"] = await meter.measure(
            calls, miss_rules)
        rows["lookup, a miss: an unrelated prompt (no MiniLM)"] = await meter.measure(calls, miss_unrelated)
        rows["lookup, a semantic hit (MiniLM on the prompt; the entry's vector stored)"] = await meter.measure(
            calls, hit)
        skipped = cache.stats.encoder_skipped
    finally:
        await client.aclose()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = ["| part | CPU us / call (gateway) | CPU us / call (Redis) | wall us / call |", "|---|---|---|---|"]
    out += [f"| {name} | {c - base[0]:,.0f} | {s - base[1]:,.0f} | {w:,.0f} |" for name, (c, s, w) in rows.items()]
    out.append(f"\n{skipped:,} lookups settled without MiniLM, {cache.stats.encoder_runs:,} ran it.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath_parts")
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    entries, calls = (50, 20) if args.smoke else (args.entries, args.calls)
    print("\n".join(asyncio.run(parts(entries, calls))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
