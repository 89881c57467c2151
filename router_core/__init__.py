"""Classification and routing policy. No web framework, Redis or database imports here."""

from router_core.classifiers.base import Classifier, Scored
from router_core.pipeline import ClassifierPipeline
from router_core.policy import tier_for
from router_core.registry import CLASSIFIERS, build, build_classifier
from router_core.types import Conversation, Decision, Turn

__all__ = [
    "CLASSIFIERS",
    "Classifier",
    "ClassifierPipeline",
    "Conversation",
    "Decision",
    "Scored",
    "Turn",
    "build",
    "build_classifier",
    "tier_for",
]
