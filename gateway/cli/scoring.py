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
    """Scores in input order, progress on stderr: a classifier that needs the encoder in blocking batches
    (one forward pass each), any other one at a time through its awaited path, as the gateway asks it
    (where it gives no answer, the middle score)."""
    from gateway.app import classifier_context, classifier_options
    from router_core import registry
    from router_core.classifiers.base import ENCODER, ClassifierError

    options, context = classifier_options(settings, [name])[name], classifier_context(settings)
    needs = registry.needs(name, options, context)
    clf = registry.build(name, options, context, embedder() if ENCODER in needs else None)
    scores: list[float] = []
    if ENCODER in needs:
        for i in range(0, len(convs), batch):
            scores += clf.score_batch(convs[i:i + batch])
            print(f"\r{min(i + batch, len(convs))}/{len(convs)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        return scores

    async def run() -> list[float]:
        out, failed = [], 0
        try:
            for i, c in enumerate(convs):
                try:
                    out.append((await clf.score(c)).score)
                except ClassifierError:  # no answer (the gateway would fall through): the middle score
                    failed += 1
                    out.append(float("nan"))
                if i % 100 == 0:
                    print(f"\r{i + 1}/{len(convs)}", end="", file=sys.stderr)
        finally:
            await clf.aclose()
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
