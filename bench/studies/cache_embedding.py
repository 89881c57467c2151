"""Which embedding the semantic cache can afford: MiniLM (ONNX) against the static table the difficulty
classifier already uses, on labelled question pairs, each with the guard as serving uses it.

    python -m bench.studies.cache_embedding --data QQP_PAIRS.jsonl [--similarity 0.92 0.94 ...]
    python -m bench.studies.cache_embedding --data QQP_PAIRS.jsonl --embeddings minilm static --similarity 0.92 \
        --gates 0.70 0.75 0.80 0.85 0.90      # the two-stage lookup's gate (cache.prefilter_similarity) only

(The Quora pairs are not in the repository, on Quora's terms; data/SOURCES.md says where they come from.) For each
embedding the pairs' cosines are computed as the cache computes them, and the guard (hard rules, then
the logistic model over cosine and what differs) is refitted on that embedding's cosines by the same
5-fold cross-validation as `bench.studies.train_guard`: every pair is judged by a guard fitted on the
other four fifths, precision weighted as on a balanced sample. Also the CPU per embedded text (one text
per call, as at one connection) and the shipped guard's weights applied unchanged to each embedding.

With both MiniLM and the static embedding, the two-stage lookup the cache serves (gateway/cache/service.py):
a pair is a hit when its static cosine reaches the gate AND MiniLM's rule holds (cosine >= 0.92, then the
shipped guard). Its precision and recall beside MiniLM alone, the share of pairs MiniLM still sees, and, on
two miss-heavy streams run through the real `ResponseCache` (in-process index, MiniLM counted), the share
of lookups that never run MiniLM: the 1,600 distinct chat prompts in data/router_outcomes (AlpacaEval,
Arena-Hard, Arena bench: unrelated requests) and 1,000 prompts as `bench.hotpath` sends them (one template,
a new number each time).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import msgspec
import numpy as np

from bench.studies.train_guard import FOLDS, Trainer, cv_folds, load_pairs, metrics
from gateway.cache.base import CachedAnswer
from gateway.cache.guard import GuardModel, hard_reject, load_guard
from gateway.cache.memory import MemoryExactStore, MemoryVectorIndex
from gateway.cache.service import ResponseCache
from gateway.vocab.settings import CacheSettings
from gateway.vocab.wire import ChatCompletionRequest, Message, ResponseMessage, Usage
from router_core.embedder import Embedder
from router_core.static_embed import StaticEmbedder

Embed = Callable[[Sequence[str]], np.ndarray]
EMBEDDINGS = {"minilm": "MiniLM (ONNX, fp32, as shipped)", "minilm-int8": "MiniLM (ONNX, int8 weights)",
              "static": "static (MiniLM distilled, 128 d)"}
DATA = Path(__file__).resolve().parents[2] / "data" / "router_outcomes"
STREAM_FILES = ("alpaca_eval_per_prompt.jsonl.gz", "arena_hard_v01_per_prompt.jsonl.gz",
                "arena_bench_v1_per_prompt.jsonl.gz")


def quantized(folder: Path) -> Embedder:
    """MiniLM with its weights quantized to int8 (onnxruntime's dynamic quantization), in `folder`."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    emb = Embedder(backend="onnx").load()
    out = folder / "minilm-int8.onnx"
    quantize_dynamic(str(emb._onnx.onnx_path), str(out), weight_type=QuantType.QInt8)
    emb._onnx.session = ort.InferenceSession(str(out), emb._onnx.session.get_session_options(),
                                             providers=["CPUExecutionProvider"])
    return emb


def embedders(names: Sequence[str], folder: Path) -> Iterator[tuple[str, Embed, Callable[[str], np.ndarray]]]:
    """(name, batch embed, single embed as the cache calls it), loaded one at a time."""
    for name in names:
        if name == "static":
            static = StaticEmbedder()
            yield "static (MiniLM distilled, 128 d)", static.embed_batch, static.embed
            continue
        emb = Embedder(backend="onnx").load() if name == "minilm" else quantized(folder)
        yield EMBEDDINGS[name], emb.encode_batch, partial(_one, emb)


def _one(emb: Embedder, text: str) -> np.ndarray:
    return emb.encode_batch([text])[0]


def cpu_us_per_text(one: Callable[[str], np.ndarray], texts: Sequence[str]) -> float:
    """Process CPU per call, one new text per call with a 5 ms pause after each, as at one connection (all
    threads count; the pause's own cost, measured alone, is taken off)."""
    for t in texts[:5]:
        one(t)
    pause = _cpu_s(str.strip, texts)  # next to nothing
    return (_cpu_s(one, texts) - pause) * 1e6 / len(texts)


def _cpu_s(work: Callable[[str], object], texts: Sequence[str]) -> float:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for t in texts:
        work(t)
        time.sleep(0.005)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.studies.cache_embedding")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--similarity", type=float, nargs="+", default=[0.88, 0.90, 0.92, 0.94, 0.96])
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--embeddings", nargs="+", choices=list(EMBEDDINGS), default=list(EMBEDDINGS))
    ap.add_argument("--gates", type=float, nargs="+", default=[0.60, 0.70, 0.75, 0.80, 0.85, 0.90],
                    help="static-cosine gates of the two-stage lookup (cache.prefilter_similarity)")
    ap.add_argument("--candidate-floor-gap", type=float, default=0.12,
                    help="the guard trains on pairs at least (similarity - this) close (0.80 at 0.92, as shipped)")
    args = ap.parse_args(argv)

    pairs = load_pairs(args.data)
    folds = cv_folds(len(pairs))
    pos = [i for i, p in enumerate(pairs) if p[2] == 1]
    neg = [i for i, p in enumerate(pairs) if p[2] == 0]
    shipped = load_guard()
    sample = [f"{a} ({i})" for i, (a, _, _) in enumerate(pairs[:300])]
    print(f"{len(pairs)} pairs ({len(pos)} same, {len(neg)} different), {FOLDS}-fold cross-validation, "
          "precision weighted as on a balanced sample\n")
    print("| embedding | CPU us / text | cosine >= | guard | precision | recall | hits | wrong hits |")
    print("|---|---|---|---|---|---|---|---|")
    cosines: dict[str, np.ndarray] = {}
    served: set[int] = set()
    for name, batch, one in embedders(args.embeddings, Path(tempfile.mkdtemp(prefix="smr-study-"))):
        t0 = time.perf_counter()
        a, b = batch([p[0] for p in pairs]), batch([p[1] for p in pairs])
        cos = cosines[name] = np.sum(a * b, axis=1)
        cpu = cpu_us_per_text(one, sample)
        embed_s = time.perf_counter() - t0
        for s in args.similarity:
            trainer = Trainer(pairs, cos, s, s - args.candidate_floor_gap, args.target_precision)
            rows = {"none": trainer.hits(None, pos + neg, s), "shipped weights": trainer.hits(shipped, pos + neg, s)}
            cv: set[int] = set()
            for f, held in enumerate(folds):
                cv |= trainer.hits(trainer.model([i for g, fold in enumerate(folds) if g != f for i in fold]), held, s)
            rows["refitted (5-fold CV)"] = cv
            for guard, hits in rows.items():
                m = metrics(hits, pos, neg)
                print(f"| {name} | {cpu:,.0f} | {s:.2f} | {guard} | {m['precision']:.3f} | {m['recall']:.3f} "
                      f"| {m['hits']} | {m['wrong_hits']} |", flush=True)
            if name == EMBEDDINGS["minilm"] and abs(s - 0.92) < 1e-9:
                served = rows["shipped weights"]
        print(f"<!-- {name}: embedded {2 * len(pairs)} texts in {embed_s:.1f} s -->", flush=True)
    if EMBEDDINGS["static"] in cosines and served:
        two_stage(pairs, cosines, served, shipped, args.gates, Embedder(backend="onnx").load())
    return 0


def two_stage(pairs: Sequence[tuple[str, str, int]], cosines: dict[str, np.ndarray], served: set[int],
              guard: GuardModel, gates: Sequence[float], minilm: Embedder) -> None:
    """The served rule (MiniLM >= 0.92 + shipped guard) with the static gate before it, on the pairs and on
    the miss-heavy streams (see the module docstring)."""
    static = cosines[EMBEDDINGS["static"]]
    pos = [i for i, p in enumerate(pairs) if p[2] == 1]
    neg = [i for i, p in enumerate(pairs) if p[2] == 0]
    rules = [i for i, (a, b, _) in enumerate(pairs) if hard_reject(a, b)]
    streams = {"chat prompts": chat_prompts(), "bench.hotpath's": hotpath_prompts(1000)}
    print("\n| rule | precision | recall | hits | wrong hits | pairs MiniLM sees | "
          + " | ".join(f"lookups without MiniLM, {n} ({len(p):,})" for n, p in streams.items()) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(streams))
    m = metrics(served, pos, neg)
    print(f"| MiniLM alone (>= 0.92 + guard) | {m['precision']:.3f} | {m['recall']:.3f} | {m['hits']} "
          f"| {m['wrong_hits']} | {len(pairs)} (100%) |" + " 0% |" * len(streams))
    skip_rules = set(rules)
    for gate in gates:
        hits = {i for i in served if static[i] >= gate}
        m = metrics(hits, pos, neg)
        seen = sum(1 for i in range(len(pairs)) if static[i] >= gate and i not in skip_rules)
        shares = [asyncio.run(skipped(prompts, gate, guard, minilm)) for prompts in streams.values()]
        print(f"| two-stage, static >= {gate:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['hits']} "
              f"| {m['wrong_hits']} | {seen} ({seen / len(pairs):.0%}) | "
              + " | ".join(f"{s:.1%}" for s in shares) + " |", flush=True)


def chat_prompts() -> list[str]:
    """The distinct prompts of the repository's chat sets, in file order (unrelated requests)."""
    out: dict[str, None] = {}
    for name in STREAM_FILES:
        for line in gzip.decompress((DATA / name).read_bytes()).decode().splitlines():
            if line.strip():
                out.setdefault(str(json.loads(line)["prompt"]), None)
    return list(out)


def hotpath_prompts(n: int) -> list[str]:
    """As bench/hotpath_wrk.lua writes them."""
    return [f"Question 0-{i}: how do I reverse a list of {i} strings in Python?" for i in range(1, n + 1)]


_ANSWER = CachedAnswer(ResponseMessage(role="assistant", content="..."), "stop", Usage(1, 1, 2), "b", "p", None,
                       "", 0)


async def skipped(prompts: Sequence[str], gate: float, guard: GuardModel, minilm: Embedder) -> float:
    """The share of lookups that never ran MiniLM, each prompt looked up in one tenant's scope and stored on
    a miss, as serving does (in-process roles; the entries' MiniLM vectors attached as serving attaches them)."""
    cfg = msgspec.structs.replace(CacheSettings(), prefilter_similarity=gate, lookup_timeout_s=30.0)
    cache = ResponseCache(MemoryExactStore(), MemoryVectorIndex(), minilm, guard, cfg)
    for text in prompts:
        lk = await cache.lookup(cache.prepare("study", request(text), "model:auto"))
        if lk.hit is None:
            await cache._save(lk, _ANSWER)
        await cache.drain()
    stats = cache.stats
    return stats.encoder_skipped / max(stats.encoder_skipped + stats.encoder_runs, 1)


def request(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="auto", messages=[Message(role="user", content=text)])


if __name__ == "__main__":
    raise SystemExit(main())
