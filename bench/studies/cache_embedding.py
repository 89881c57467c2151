"""Which embedding the semantic cache can afford: MiniLM (ONNX) against the static table the difficulty
classifier already uses, on labelled question pairs, each with the guard as serving uses it.

    python -m bench.studies.cache_embedding --data QQP_PAIRS.jsonl [--similarity 0.92 0.94 ...]

(The Quora pairs are not in the repository; data/SOURCES.md says where they come from.) For each
embedding the pairs' cosines are computed as the cache computes them, and the guard (hard rules, then
the logistic model over cosine and what differs) is refitted on that embedding's cosines by the same
5-fold cross-validation as `bench.studies.train_guard`: every pair is judged by a guard fitted on the
other four fifths, precision weighted as on a balanced sample. Also the CPU per embedded text (one text
per call, as at one connection) and the shipped guard's weights applied unchanged to each embedding.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.studies.train_guard import FOLDS, Trainer, cv_folds, load_pairs, metrics
from gateway.cache.guard import load_guard
from router_core.embedder import Embedder
from router_core.static_embed import StaticEmbedder

Embed = Callable[[Sequence[str]], np.ndarray]
EMBEDDINGS = {"minilm": "MiniLM (ONNX, fp32, as shipped)", "minilm-int8": "MiniLM (ONNX, int8 weights)",
              "static": "static (MiniLM distilled, 128 d)"}


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
    prefilter(cosines, served, len(pairs))
    return 0


def prefilter(cosines: dict[str, np.ndarray], served: set[int], n: int) -> None:
    """A cascade the figures suggest: the static cosine as a cheap first stage, MiniLM and the guard only for
    candidates above it. How many of the served configuration's hits (MiniLM >= 0.92 + shipped guard) it
    keeps, and how many pairs would still need MiniLM."""
    static, minilm = cosines.get(EMBEDDINGS["static"]), cosines.get(EMBEDDINGS["minilm"])
    if static is None or minilm is None or not served:
        return
    print("\n| static cosine >= | served hits kept | pairs passed on to MiniLM |\n|---|---|---|")
    for t in (0.70, 0.75, 0.80, 0.85, 0.90):
        kept = sum(1 for i in served if static[i] >= t)
        print(f"| {t:.2f} | {kept} of {len(served)} ({kept / len(served):.1%}) "
              f"| {int((static >= t).sum())} of {n} ({float((static >= t).mean()):.1%}) |")


if __name__ == "__main__":
    raise SystemExit(main())
