"""Conversation-aware routing (issue 14): follow-ups keep the conversation's tier, and a score wobbling
around a cut-off does not switch models. A classifier with scripted scores stands in for a real one."""

from __future__ import annotations

from router_core import Classifier, ClassifierPipeline, Conversation, Scored, Turn
from router_core.conversation import ConversationPolicy, decide_in_conversation, is_follow_up, sticky_tier

CUTOFFS = (0.35, 0.62)
POLICY = ConversationPolicy()


class Scripted(Classifier):
    """Scores a conversation by its last user turn's text, from a table."""

    name = "scripted"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls = 0

    def score_now(self, conv: Conversation) -> Scored:
        self.calls += 1
        return Scored(self.scores[conv.last_user])


def chat(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Turn(r, t) for r, t in turns))


async def test_a_short_follow_up_after_a_hard_task_stays_on_the_hard_tier() -> None:
    task = "Design a sharded, fault-tolerant job queue with exactly-once delivery"
    pipe = ClassifierPipeline([Scripted({task: 0.9, "yes, do it": 0.1, "thanks!": 0.05})], CUTOFFS)
    first = await decide_in_conversation(pipe, chat(("user", task)), POLICY)
    assert first.tier == "complex"
    follow = await decide_in_conversation(pipe, chat(("user", task), ("assistant", "Here is a plan ..."),
                                                     ("user", "yes, do it")), POLICY)
    assert follow.tier == "complex" and follow.score == 0.9 * POLICY.decay
    assert follow.reasons[0].startswith("follow-up: carried the conversation's score 0.90")


async def test_a_new_real_question_is_scored_on_its_own() -> None:
    task, new = "Design a distributed cache", "Now translate the word 'cache' into French, please, and nothing else"
    pipe = ClassifierPipeline([Scripted({task: 0.9, new: 0.1})], CUTOFFS)
    d = await decide_in_conversation(pipe, chat(("user", task), ("assistant", "..."), ("user", new)), POLICY)
    assert d.tier == "simple"  # long enough to say what it wants: not a follow-up


async def test_a_tool_result_keeps_the_tier_of_the_task_that_called_the_tool() -> None:
    task = "Refactor the payment module and run the migration"
    pipe = ClassifierPipeline([Scripted({task: 0.8})], CUTOFFS)
    conv = chat(("user", task), ("assistant", "calling run_migration"), ("tool", '{"ok": true}'))
    assert is_follow_up(conv, POLICY)
    d = await decide_in_conversation(pipe, conv, POLICY)
    assert d.tier == "complex"


async def test_a_score_wobbling_around_a_cut_off_does_not_switch_models() -> None:
    turns = [f"question number {i} about the same topic, with some detail" for i in range(6)]
    wobble = [0.37, 0.33, 0.36, 0.34, 0.33, 0.28]  # around the 0.35 cut-off, then clearly below
    pipe = ClassifierPipeline([Scripted(dict(zip(turns, wobble, strict=True)))], CUTOFFS)
    tiers = []
    history: list[tuple[str, str]] = []
    for t in turns:
        history += [("user", t)]
        tiers.append((await decide_in_conversation(pipe, chat(*history), POLICY)).tier)
        history += [("assistant", "an answer")]
    assert tiers == ["medium"] * 5 + ["simple"]  # the raw tiers would have flipped four times
    assert [("medium" if s >= 0.35 else "simple") for s in wobble] != tiers


def test_sticky_tier_is_a_plain_function() -> None:
    assert sticky_tier(0.34, "medium", CUTOFFS, 0.05) == "medium"
    assert sticky_tier(0.29, "medium", CUTOFFS, 0.05) == "simple"
    assert sticky_tier(0.64, "medium", CUTOFFS, 0.05) == "medium"
    assert sticky_tier(0.70, "medium", CUTOFFS, 0.05) == "complex"
    assert sticky_tier(0.63, "simple", CUTOFFS, 0.05) == "complex"  # two tiers apart: no stickiness
