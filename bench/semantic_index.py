"""What a filtered KNN search costs the Redis server, by how the query engine runs it, as the index grows.

    python -m bench.semantic_index [--entries 20000] [--searches 200] [--smoke]

One embedded redis-stack-server, one index built as the gateway builds its semantic index (HNSW, cosine, the
static embedding's 128 dimensions, one TAG for the tenant and scope; `gateway.cache.redis_store`), filled with
`--entries` synthetic unit vectors (clusters of near prompts) split over four scopes holding 80 %, 15 %, 4.9 %
and 0.1 % of them. For each scope, `--searches` queries (k = 3; each a
paraphrase of one of the scope's entries, at cosine ~0.9 from it: what a semantic hit has to find) run:

- as the engine chooses when asked nothing (what the gateway sent before it chose: its own pick was the brute
  force in every case measured);
- as an ad hoc brute force over the scope (`HYBRID_POLICY ADHOC_BF`: exact);
- as HNSW in batches (`HYBRID_POLICY BATCHES`) with EF_RUNTIME 10 (the engine's default), 20 and 40 (the gateway's);
- as `knn_policy` picks from the scope's and the index's entry counts (what the gateway now sends).

Redis CPU per search is `INFO commandstats`' FT.SEARCH time (the server's own count, microseconds); recall is
how often the first result is the scope's true nearest (numpy over the scope's vectors; nearly always the
entry the query paraphrases). Storing is timed the
same way (HSET into the index), for the index built with EF_CONSTRUCTION 200 (the engine's default, the
gateway's version 2), 128 (version 3) and 64. `--smoke`: 1,500 entries, 20 searches, one build (128).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from bench.libssl import fetched_libssl11
from bench.procs import ROOT
from gateway.cache.embedded import EmbeddedRedis
from gateway.cache.redis_store import ADHOC, BATCHES, HNSW_PARAMS, knn_policy

DIM = 128
SHARES = {"80 %": 0.80, "15 %": 0.15, "4.9 %": 0.049, "0.1 %": 0.001}
POLICIES = {"engine's choice (before)": "", "brute force": ADHOC, "batches, EF_RUNTIME 10": "HYBRID_POLICY BATCHES",
            "batches, EF_RUNTIME 20": "HYBRID_POLICY BATCHES EF_RUNTIME 20", "batches, EF_RUNTIME 40": BATCHES}


def usec(r: redis.Redis, command: str) -> tuple[float, int]:
    stats = r.info("commandstats").get(f"cmdstat_{command}", {"usec": 0, "calls": 0})
    return float(stats["usec"]), int(stats["calls"])


class Data:
    def __init__(self, entries: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(size=(300, DIM)).astype(np.float32)
        names, p = list(SHARES), np.array(list(SHARES.values()))
        self.scope_of = [names[i] for i in self.rng.choice(len(names), size=entries, p=p / p.sum())]
        self.vectors = np.stack([self.near() for _ in range(entries)])

    def paraphrase(self, v: np.ndarray) -> np.ndarray:
        """A query at cosine ~0.9 from a stored entry (a paraphrase's distance: what a hit has to find)."""
        noise = self.rng.normal(size=DIM).astype(np.float32)
        q = v + 0.48 * noise / np.linalg.norm(noise)
        return (q / np.linalg.norm(q)).astype(np.float32)

    def near(self) -> np.ndarray:
        v = self.centres[self.rng.integers(len(self.centres))] + 0.6 * self.rng.normal(size=DIM).astype(np.float32)
        return (v / np.linalg.norm(v)).astype(np.float32)


def build(r: redis.Redis, data: Data, ef_construction: int) -> float:
    """The index filled; the HSET's Redis CPU per entry stored."""
    r.flushall()
    r.execute_command("FT.CREATE", "bench_ix", "ON", "HASH", "PREFIX", 1, "b:", "SCHEMA", "ts", "TAG", "vec", "VECTOR",
                      "HNSW", 10, "TYPE", "FLOAT32", "DIM", DIM, "DISTANCE_METRIC", "COSINE",
                      "M", HNSW_PARAMS["M"], "EF_CONSTRUCTION", ef_construction)
    before, calls = usec(r, "hset")
    pipe = r.pipeline(transaction=False)
    for i, (scope, v) in enumerate(zip(data.scope_of, data.vectors, strict=True)):
        pipe.hset(f"b:{i}", mapping={"ts": scope_tag(scope), "prompt": f"prompt {i}", "answer": b"x" * 600,
                                     "vec": v.tobytes()})
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    after, calls_after = usec(r, "hset")
    return (after - before) / max(calls_after - calls, 1)


def scope_tag(scope: str) -> str:
    return "s" + scope.replace(" %", "").replace(".", "_")


def search_rows(r: redis.Redis, data: Data, searches: int) -> list[tuple[str, int, str, float, float]]:
    """(scope, its entries, how, Redis us per search, recall of the nearest)."""
    rows = []
    total = len(data.vectors)
    for scope in SHARES:
        mask = np.array([s == scope for s in data.scope_of])
        own = data.vectors[mask]
        queries = [data.paraphrase(own[data.rng.integers(len(own))]) for _ in range(searches)]
        truth = [int(np.argmax(own @ q)) for q in queries]
        hows = {**POLICIES, "knn_policy's pick (now)": knn_policy(len(own), total)}
        for how, policy in hows.items():
            before, calls = usec(r, "FT.SEARCH")
            right = 0
            for q, best in zip(queries, truth, strict=True):
                res = r.execute_command(
                    "FT.SEARCH", "bench_ix", f"(@ts:{{{scope_tag(scope)}}})=>[KNN 3 @vec $v {policy} AS dist]",
                    "RETURN", 1, "dist", "SORTBY", "dist", "ASC", "DIALECT", 2, "LIMIT", 0, 3, "PARAMS", 2, "v", q.tobytes())
                if len(res) > 1:
                    right += abs((1 - float(res[2][1])) - float(own[best] @ q)) < 1e-4
            after, calls_after = usec(r, "FT.SEARCH")
            label = how if how != "knn_policy's pick (now)" else f"{how}: {'batches' if policy == BATCHES else 'brute force'}"
            rows.append((scope, len(own), label, (after - before) / max(calls_after - calls, 1), right / searches))
    return rows


def run(entries: int, searches: int, builds: tuple[int, ...]) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="smr-semidx-"))
    server = EmbeddedRedis(tmp, fetched_libssl11())
    server.start()
    out = [f"## Filtered KNN in the semantic index (`python -m bench.semantic_index --entries {entries} "
           f"--searches {searches}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", ""]
    try:
        r = redis.Redis.from_url(server.url, protocol=2)
        data = Data(entries)
        store_rows = []
        for ef in builds:
            store_rows.append((ef, build(r, data, ef)))
            out += [f"### Index built with EF_CONSTRUCTION {ef}, {entries:,} entries", "",
                    "| scope's share | its entries | search run as | Redis CPU µs / search | nearest found |",
                    "|---|---|---|---|---|"]
            out += [f"| {s} | {n:,} | {how} | {cpu:,.0f} | {recall:.2f} |"
                    for s, n, how, cpu, recall in search_rows(r, data, searches)]
            out.append("")
        out += ["| EF_CONSTRUCTION | Redis CPU µs / entry stored (HSET into the index) |", "|---|---|"]
        out += [f"| {ef} | {cpu:,.0f} |" for ef, cpu in store_rows]
        r.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.semantic_index")
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="1,500 entries, 20 searches, one build (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        lines = run(1500, 20, (HNSW_PARAMS["EF_CONSTRUCTION"],))
    else:
        lines = run(args.entries, args.searches, (200, HNSW_PARAMS["EF_CONSTRUCTION"], 64))
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / "semantic_index.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
