from __future__ import annotations

import asyncio
import logging
import math

import pytest

from router_core import ClassifierPipeline, Conversation, tier_for
from router_core.classifiers.base import Abstain, Classifier, ClassifierError, Scored
from router_core.classifiers.heuristic import HeuristicClassifier, heuristic_score
from router_core.features import extract


def conv(text: str) -> Conversation:
    return Conversation.from_prompt(text)


@pytest.mark.parametrize(("score", "tier"), [(0.0, "simple"), (0.349, "simple"), (0.35, "medium"),
                                             (0.61, "medium"), (0.62, "complex"), (1.0, "complex")])
def test_cutoffs(score: float, tier: str) -> None:
    assert tier_for(score, (0.35, 0.62)) == tier


def test_nan_score_is_refused() -> None:
    with pytest.raises(ValueError):
        tier_for(math.nan, (0.3, 0.6))


@pytest.mark.parametrize("text", ["", "hi", "x" * 50_000, "```\ncode\n```" * 40, "?" * 500,
                                  "design debug optimise prove architect " * 100])
def test_heuristic_score_in_range(text: str) -> None:
    s = heuristic_score(conv(text))
    assert 0.0 <= s <= 1.0


def test_heuristic_orders_prompts_by_difficulty() -> None:
    easy = heuristic_score(conv("Translate 'thank you' to French"))
    mid = heuristic_score(conv("Explain Python decorators"))
    hard = heuristic_score(conv("Design a banking API"))
    harder = heuristic_score(conv("Design and debug a distributed consensus algorithm; prove it is correct. "
                                  "It must tolerate partitions and ensure linearizability. ```code```"))
    assert easy < mid < hard < harder


def test_features_count_structure() -> None:
    f = extract(Conversation.from_prompt("Why? How? ```a``` and ```b``` must ensure", system="sys"))
    assert f.code_blocks == 2 and f.questions == 2 and f.constraints == 2 and f.turns == 1


def test_conversation_length_raises_score() -> None:
    from router_core.types import Turn
    short = Conversation((Turn("user", "and then?"),))
    long = Conversation(tuple(Turn("user" if i % 2 == 0 else "assistant", "and then?") for i in range(15)))
    assert heuristic_score(long) > heuristic_score(short)


class Slow(Classifier):
    name = "slow"

    async def score(self, c: Conversation) -> Scored:
        await asyncio.sleep(5)
        return Scored(0.9)


class Broken(Classifier):
    name = "broken"

    async def score(self, c: Conversation) -> Scored:
        raise ClassifierError("model not loaded")


class OutOfRange(Classifier):
    name = "wild"

    async def score(self, c: Conversation) -> Scored:
        return Scored(1.7)


class Fixed(Classifier):
    name = "fixed"

    async def score(self, c: Conversation) -> Scored:
        return Scored(0.5)


async def test_pipeline_falls_through_timeout_error_and_bad_scores() -> None:
    p = ClassifierPipeline([Slow(), Broken(), OutOfRange(), HeuristicClassifier()], (0.35, 0.62), budget_s=0.05)
    d = await p.decide(conv("Translate hello to German"))
    assert d.classifier == "heuristic" and d.tier == "simple"
    assert [s.split(":")[0] for s in d.skipped] == ["slow", "broken", "wild"]
    assert "timeout" in d.skipped[0]


async def test_pipeline_first_answer_wins() -> None:
    d = await ClassifierPipeline([Fixed(), HeuristicClassifier()], (0.35, 0.62)).decide(conv("hi"))
    assert (d.classifier, d.score, d.tier) == ("fixed", 0.5, "medium")


async def test_pipeline_all_fail_uses_fallback_tier() -> None:
    d = await ClassifierPipeline([Broken()], (0.35, 0.62), fallback_tier="complex").decide(conv("hi"))
    assert d.tier == "complex" and d.classifier == "none"


class Declines(Classifier):
    name = "declines"

    async def score(self, c: Conversation) -> Scored:
        raise Abstain("too short")


async def test_a_declining_classifier_is_noted_but_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="router_core.pipeline")
    d = await ClassifierPipeline([Declines(), HeuristicClassifier()], (0.35, 0.62)).decide(conv("hi"))
    assert d.classifier == "heuristic" and d.skipped == ("declines: declined: too short",)
    assert not caplog.records
    d = await ClassifierPipeline([Broken(), Declines(), HeuristicClassifier()], (0.35, 0.62)).decide(conv("hi"))
    assert d.classifier == "heuristic" and len(d.skipped) == 2
    assert [r.getMessage() for r in caplog.records] == [f"classifier fallback: {'; '.join(d.skipped)}"]
