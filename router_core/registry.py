"""Explicit name -> factory registry of classifiers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from router_core.classifiers.base import Classifier
from router_core.classifiers.heuristic import HeuristicClassifier

ClassifierFactory = Callable[[Mapping[str, Any]], Classifier]


def _heuristic(options: Mapping[str, Any]) -> Classifier:
    return HeuristicClassifier()


def _embedding(options: Mapping[str, Any]) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.embedding import EmbeddingClassifier, load_head
    from router_core.embedder import Embedder

    embedder = options.get("embedder") or Embedder()
    head_path = options.get("head_path")
    return EmbeddingClassifier(embedder, load_head(Path(head_path)) if head_path else None)


def difficulty_embedding(requested: str, device: str) -> str:
    """What the `difficulty` classifier reads: `auto` is MiniLM (the transformer path) where the encoder
    runs on a GPU, the static embedding (all CPU, under 2 ms) elsewhere."""
    if requested != "auto":
        return requested
    return "minilm" if device.startswith("cuda") else "static"


def _difficulty(options: Mapping[str, Any]) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.difficulty import DifficultyClassifier, EncoderDifficultyClassifier
    from router_core.difficulty import HEAD_PATHS, load_head

    kind = options.get("difficulty_embedding", "static")
    if kind not in HEAD_PATHS:
        raise ValueError(f"difficulty_embedding must be static or minilm, not {kind!r}")
    given = options.get("difficulty_head")
    head = load_head(Path(given) if given else HEAD_PATHS[kind])   # the classifier checks what it was trained on
    if kind == "static":
        return DifficultyClassifier(head)
    encoder = options.get("embedder")
    if encoder is None:
        raise ValueError("the difficulty classifier on minilm needs the shared embedder")
    return EncoderDifficultyClassifier(encoder, head)


def _tiered(options: Mapping[str, Any]) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.difficulty import DifficultyClassifier
    from router_core.classifiers.tiered import TieredClassifier
    from router_core.difficulty import HEAD_PATHS, load_head

    given = options.get("difficulty_head")
    head = load_head(Path(given) if given else HEAD_PATHS["static"])
    return TieredClassifier(DifficultyClassifier(head), tuple(options.get("cutoffs", (0.35, 0.62))))


def _llm(options: Mapping[str, Any]) -> Classifier:
    from router_core.classifiers.ollama_llm import OllamaLLMClassifier, OpenAICompatLLMClassifier

    url = options.get("ollama_url", "http://127.0.0.1:11434")
    args = (url, options.get("model", "granite4:350m"), tuple(options.get("cutoffs", (0.35, 0.62))),
            float(options.get("timeout_s", 2.0)))
    if url.rstrip("/").endswith("/v1"):
        return OpenAICompatLLMClassifier(*args, api_key=options.get("api_key"))
    return OllamaLLMClassifier(*args)


CLASSIFIERS: dict[str, ClassifierFactory] = {
    "heuristic": _heuristic,
    "embedding": _embedding,
    "difficulty": _difficulty,
    "tiered": _tiered,
    "llm": _llm,
}


def build_classifier(name: str, options: Mapping[str, Any] | None = None) -> Classifier:
    try:
        factory = CLASSIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}") from None
    return factory(options or {})
