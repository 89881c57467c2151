"""A chain of classifiers, each with a time budget; the first that answers decides the tier."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from router_core.classifiers.base import Abstain, Classifier, SyncClassifier
from router_core.policy import tier_for
from router_core.types import Conversation, Decision

log = logging.getLogger("router_core.pipeline")


class ClassifierPipeline:
    def __init__(
        self,
        classifiers: Sequence[Classifier],
        cutoffs: tuple[float, float],
        budget_s: float = 0.5,
        fallback_tier: str = "medium",
    ) -> None:
        if not classifiers:
            raise ValueError("a pipeline needs at least one classifier")
        self.classifiers = tuple(classifiers)
        self.cutoffs = cutoffs
        self.budget_s = budget_s
        self.fallback_tier = fallback_tier

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classifiers)

    @property
    def labels(self) -> tuple[str, ...]:
        """The names with what each reads, where a classifier says (`difficulty (on the minilm embedding)`)."""
        return tuple(getattr(c, "label", c.name) for c in self.classifiers)

    async def decide(self, conv: Conversation) -> Decision:
        skipped: list[str] = []
        failed = False
        for c in self.classifiers:
            reasons: tuple[str, ...] | None = None
            try:
                both = getattr(c, "score_with_reasons", None)
                later = getattr(c, "score_explained", None)
                if both is not None:  # the score and why, in one pass (the heuristic, the static difficulty head)
                    score, reasons = both(conv)
                elif later is not None:  # the same, awaited (the difficulty head on a transformer encoder)
                    score, reasons = await asyncio.wait_for(later(conv), self.budget_s)
                elif isinstance(c, SyncClassifier):
                    score = c.score_now(conv)
                else:
                    score = await asyncio.wait_for(c.score(conv), self.budget_s)
            except TimeoutError:
                skipped.append(f"{c.name}: timeout after {self.budget_s}s")
                failed = True
                continue
            except Abstain as exc:
                skipped.append(f"{c.name}: declined: {exc}")
                continue
            except Exception as exc:  # any classifier failure falls through to the next one
                skipped.append(f"{c.name}: {type(exc).__name__}: {exc}")
                failed = True
                continue
            if not isinstance(score, float | int) or math.isnan(score) or not 0.0 <= score <= 1.0:
                skipped.append(f"{c.name}: score out of range: {score!r}")
                failed = True
                continue
            if failed:
                log.warning("classifier fallback: %s", "; ".join(skipped))
            if reasons is None:
                explain = getattr(c, "reasons", None)
                reasons = tuple(explain(conv)) if callable(explain) else ()
            return Decision(float(score), tier_for(float(score), self.cutoffs), c.name, tuple(skipped), reasons)
        log.warning("every classifier failed, routing to %s: %s", self.fallback_tier, "; ".join(skipped))
        return Decision(0.5, self.fallback_tier, "none", tuple(skipped))

    async def aclose(self) -> None:
        for c in self.classifiers:
            close = getattr(c, "aclose", None)
            if close is not None:
                await close()
