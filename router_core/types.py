"""Plain data the router works on: a conversation in, a decision out."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The one definition of the tiers, cheapest first; everything else (settings, wire types, keys) uses these.
Tier = Literal["simple", "medium", "complex"]
TIERS: tuple[Tier, Tier, Tier] = ("simple", "medium", "complex")


class Turn(msgspec.Struct, frozen=True):
    role: str
    text: str


class Conversation(msgspec.Struct, frozen=True):
    turns: tuple[Turn, ...]
    # An embedding already computed for this request (by the semantic cache) and the text it embeds,
    # so an embedding classifier reuses it instead of computing it twice.
    embedding: Any = None
    embedded_text: str | None = None

    @classmethod
    def from_prompt(cls, prompt: str, system: str | None = None) -> Conversation:
        turns = (Turn("system", system),) if system else ()
        return cls((*turns, Turn("user", prompt)))

    @property
    def last_user(self) -> str:
        for t in reversed(self.turns):
            if t.role == "user":
                return t.text
        return self.turns[-1].text if self.turns else ""

    @property
    def all_text(self) -> str:
        return "\n".join(t.text for t in self.turns)


class Decision(msgspec.Struct, frozen=True):
    score: float
    tier: str
    classifier: str
    # Classifiers that were tried before this one and failed, with the reason.
    skipped: tuple[str, ...] = ()
    # Why this score, as far as the classifier can say (the heuristic: the features that moved it most).
    reasons: tuple[str, ...] = ()
