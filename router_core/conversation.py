"""Conversation-aware routing: a follow-up keeps its conversation's tier, and a conversation changes tier
only when its score passes a cut-off by a margin (so the provider's prompt cache is not thrown away for
a small saving).

    follow-up   the last turn is a tool result, or a user turn of at most `follow_up_tokens` ("yes, do
                it", "commit it"): it says little by itself, so it carries the score of the conversation
                before it, times `decay`, when that is higher than its own
    sticky      a score that crosses into the next tier by less than `sticky_margin` stays on the
                conversation's previous tier

Stateless, so every gateway process decides alike: the conversation's earlier user turns (the last
`lookback` of them) are scored again, oldest first, and the rules applied turn by turn.
"""

from __future__ import annotations

import msgspec

from router_core.features import estimate_tokens
from router_core.pipeline import ClassifierPipeline
from router_core.policy import tier_for
from router_core.types import TIERS, Conversation, Decision


class ConversationPolicy(msgspec.Struct, frozen=True):
    follow_up_tokens: int = 12
    decay: float = 0.9
    sticky_margin: float = 0.05
    lookback: int = 4


def is_follow_up(conv: Conversation, policy: ConversationPolicy) -> bool:
    """A tool result, or a short user turn after earlier ones: it says little by itself."""
    if len(conv.turns) < 2:
        return False
    last = conv.turns[-1]
    if last.role == "tool":
        return True
    earlier = any(t.role == "user" for t in conv.turns[:-1])
    return last.role == "user" and earlier and estimate_tokens(last.text) <= policy.follow_up_tokens


def sticky_tier(score: float, previous: str, cutoffs: tuple[float, float], margin: float) -> str:
    """The tier for `score`, unless it crossed from the adjacent `previous` tier by less than `margin`."""
    new = tier_for(score, cutoffs)
    i, j = TIERS.index(new), TIERS.index(previous)  # type: ignore[arg-type]
    if abs(i - j) == 1 and abs(score - cutoffs[min(i, j)]) < margin:
        return previous
    return new


def user_prefixes(conv: Conversation, lookback: int) -> list[Conversation]:
    """The conversation as it stood at each of its last `lookback` earlier user turns (oldest first), then
    whole. A conversation that ends in a tool result has its last user turn among the earlier ones."""
    ends = [i + 1 for i, t in enumerate(conv.turns) if t.role == "user"]
    if ends and ends[-1] == len(conv.turns):
        ends = ends[:-1]
    return [Conversation(conv.turns[:end]) for end in ends[-lookback:]] + [conv]


async def decide_in_conversation(pipeline: ClassifierPipeline, conv: Conversation,
                                 policy: ConversationPolicy) -> Decision:
    prefixes = user_prefixes(conv, policy.lookback)
    if len(prefixes) == 1 and not is_follow_up(conv, policy):
        return await pipeline.decide(conv)
    cutoffs = pipeline.cutoffs
    decision = await pipeline.decide(prefixes[0])
    score, tier = decision.score, decision.tier
    for p in prefixes[1:]:
        decision = await pipeline.decide(p)
        own, reasons = decision.score, list(decision.reasons)
        if is_follow_up(p, policy) and score * policy.decay > own:
            own = score * policy.decay
            reasons.insert(0, f"follow-up: carried the conversation's score {score:.2f} x {policy.decay}")
        new_tier = sticky_tier(own, tier, cutoffs, policy.sticky_margin)
        if new_tier != tier_for(own, cutoffs):
            reasons.insert(0, f"sticky: stayed on {new_tier} (score {own:.2f} within {policy.sticky_margin} "
                              "of the cut-off)")
        score, tier = own, new_tier
        decision = msgspec.structs.replace(decision, score=own, tier=tier, reasons=tuple(reasons))
    return decision
