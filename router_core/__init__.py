"""Classification and routing policy. No web framework, Redis or database imports here."""

from router_core.pipeline import ClassifierPipeline
from router_core.policy import tier_for
from router_core.registry import CLASSIFIERS, build_classifier
from router_core.types import Conversation, Decision, Turn

__all__ = [
    "CLASSIFIERS",
    "ClassifierPipeline",
    "Conversation",
    "Decision",
    "Turn",
    "build_classifier",
    "tier_for",
]
