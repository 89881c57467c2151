"""What the router's offline tools share: an encoder, scoring conversations with a named classifier, and
writing routing.cutoffs into a config file."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from router_core.types import Conversation

# `smr train --write` given without a path: the packaged head (`--difficulty`; `--from-logs` needs a path).
WRITE_DEFAULT = "(packaged)"


def embedder() -> Any:
    from router_core.embedder import Embedder

    return Embedder().load()


def score_all(name: str, convs: list[Conversation], settings: Any, batch: int = 64) -> list[float]:
    """Scores in input order, batched, progress on stderr."""
    from router_core.classifiers.embedding import EmbeddingClassifier, classifier_text, load_head
    from router_core.registry import build_classifier

    scores: list[float] = []
    if name == "embedding":
        head = settings.routing.embedding_head
        clf = EmbeddingClassifier(embedder(), load_head(Path(head)) if head else None)
        for i in range(0, len(convs), batch):
            scores += clf.score_batch([classifier_text(c) for c in convs[i:i + batch]])
            print(f"\r{min(i + batch, len(convs))}/{len(convs)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        return scores
    from router_core.classifiers.base import ClassifierError

    options = {"cutoffs": settings.routing.cutoffs, "ollama_url": settings.routing.llm_base_url,
               "model": settings.routing.llm_model, "timeout_s": settings.routing.llm_timeout_s}
    clf_any = build_classifier(name, options)

    async def run() -> list[float]:
        out, failed = [], 0
        try:
            for i, c in enumerate(convs):
                try:
                    out.append(await clf_any.score(c))
                except ClassifierError:  # no answer (the gateway would fall through): the middle score
                    failed += 1
                    out.append(float("nan"))
                if i % 100 == 0:
                    print(f"\r{i + 1}/{len(convs)}", end="", file=sys.stderr)
        finally:
            close = getattr(clf_any, "aclose", None)
            if close is not None:
                await close()
        print(f"\r{len(convs)} scored, {failed} without an answer" if failed else "", file=sys.stderr)
        return [0.5 if s != s else s for s in out]

    return asyncio.run(run())


def decide_all(convs: list[Conversation], settings: Any) -> list[Any]:
    """Each conversation's `Decision` from the configured pipeline, with the conversation rules (a follow-up
    keeps its conversation's tier), as the gateway decides."""
    from gateway.app import build_embedder, build_pipeline, routing_needs_encoder
    from router_core.conversation import ConversationPolicy, decide_in_conversation

    r = settings.routing
    policy = ConversationPolicy(r.follow_up_tokens, r.follow_up_decay, r.sticky_margin, r.conversation_lookback)
    embedder = build_embedder(settings) if routing_needs_encoder(settings) else None
    if embedder is not None:
        embedder.load()
    pipeline = build_pipeline(settings, embedder)

    async def run() -> list[Any]:
        try:
            return [await decide_in_conversation(pipeline, c, policy) for c in convs]
        finally:
            await pipeline.aclose()
            if embedder is not None:
                await embedder.aclose()

    return asyncio.run(run())


def write_cutoffs(path: Path, cut: tuple[float, float]) -> None:
    """Set routing.cutoffs in a TOML config file, keeping the rest of it as it is."""
    text = path.read_text()
    line = f"cutoffs = [{cut[0]}, {cut[1]}]"
    new, n = re.subn(r"(?m)^cutoffs\s*=\s*\[[^\]]*\]", line, text)
    if n == 0:
        new = re.sub(r"(?m)^\[routing\]\s*$", "[routing]\n" + line, text, count=1)
    path.write_text(new)
    print(f"wrote routing.cutoffs to {path}", file=sys.stderr)
