"""Classifier latency (one prompt at a time) and throughput at 1, 8 and 32 concurrent requests."""

from __future__ import annotations

import asyncio

from bench.classifier_load import HEADER, PROMPT, SHORT, row
from gateway.fakes.common import Behaviour
from gateway.fakes.server import FakeUpstreams
from router_core.classifiers.base import Classifier
from router_core.classifiers.difficulty import DifficultyClassifier, EncoderDifficultyClassifier
from router_core.classifiers.embedding import EmbeddingClassifier
from router_core.classifiers.heuristic import HeuristicClassifier
from router_core.classifiers.ollama_llm import OllamaLLMClassifier
from router_core.embedder import Embedder
from router_core.registry import build_classifier


async def _run(smoke: bool) -> list[str]:
    n = 2 if smoke else 256  # smoke: every classifier scores, one at a time and at once; no figure read
    fakes = FakeUpstreams()
    await fakes.start()
    fakes.ollama.behaviour = Behaviour(reply="MEDIUM")
    embedder = Embedder().load()  # auto: ONNX Runtime on CPU, torch on CUDA
    other = Embedder(backend="torch").load() if embedder.backend == "onnx" and not smoke else None
    on = f"{embedder.backend}, {embedder.device}"
    difficulty = DifficultyClassifier()
    tiered = build_classifier("tiered", {"cutoffs": (0.35, 0.62)})
    classifiers: list[tuple[str, Classifier, str]] = [
        ("heuristic", HeuristicClassifier(), PROMPT),
        ("tiered (quick tasks, then the static difficulty head; the default), 200 tokens", tiered, PROMPT),
        ("tiered (the default), 20 tokens", tiered, SHORT),
        ("difficulty (static embedding + head), 200 tokens", difficulty, PROMPT),
        ("difficulty (static embedding + head), 20 tokens", difficulty, SHORT),
        (f"difficulty on MiniLM (the transformer path, the default on a GPU; {on}), 200 tokens",
         EncoderDifficultyClassifier(embedder), PROMPT),
        (f"embedding (MiniLM + head, {on}), 200 tokens", EmbeddingClassifier(embedder), PROMPT),
        (f"embedding (MiniLM + head, {on}), 20 tokens", EmbeddingClassifier(embedder), SHORT),
        ("llm (fake Ollama, no model time)", OllamaLLMClassifier(fakes.ollama_url, "granite4:350m", (0.35, 0.62)),
         PROMPT),
    ]
    if other is not None:
        classifiers[4:4] = [(f"embedding (MiniLM + head, torch, {other.device}), 200 tokens",
                             EmbeddingClassifier(other), PROMPT),
                            (f"embedding (MiniLM + head, torch, {other.device}), 20 tokens",
                             EmbeddingClassifier(other), SHORT)]
    rows = list(HEADER)
    try:
        for name, clf, prompt in classifiers:
            rows.append(await row(name, clf, prompt, n))
    finally:
        for e in (embedder, other):
            if e is not None:
                await e.aclose()
        await fakes.stop()
    return rows


def run(smoke: bool) -> list[str]:
    return asyncio.run(_run(smoke))
