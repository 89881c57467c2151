"""A chain of classifiers, each with a time budget; the first that answers decides the tier. Each is
asked through the declared contract (`router_core.classifiers.base.Classifier`): its inline answer
where it has one, else its awaited one."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from router_core.classifiers.base import Abstain, Classifier, Scored
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
        for c in classifiers:
            if not isinstance(c, Classifier):
                raise TypeError(f"{type(c).__name__} is not a router_core Classifier")
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
        return tuple(c.label for c in self.classifiers)

    async def decide(self, conv: Conversation) -> Decision:
        skipped: list[str] = []
        failed = False
        for c in self.classifiers:
            try:
                scored = c.score_now(conv)
                if scored is None:
                    scored = await asyncio.wait_for(c.score(conv), self.budget_s)
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
            score = scored.score if isinstance(scored, Scored) else scored
            if (not isinstance(scored, Scored) or not isinstance(score, float | int) or math.isnan(score)
                    or not 0.0 <= score <= 1.0):
                skipped.append(f"{c.name}: score out of range: {score!r}")
                failed = True
                continue
            if failed:
                log.warning("classifier fallback: %s", "; ".join(skipped))
            return Decision(float(score), tier_for(float(score), self.cutoffs), c.name, tuple(skipped),
                            tuple(scored.reasons))
        log.warning("every classifier failed, routing to %s: %s", self.fallback_tier, "; ".join(skipped))
        return Decision(0.5, self.fallback_tier, "none", tuple(skipped))

    async def aclose(self) -> None:
        for c in self.classifiers:
            await c.aclose()
