"""Explicit name -> factory registry of classifiers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from router_core.classifiers.base import Classifier
from router_core.classifiers.heuristic import HeuristicClassifier

ClassifierFactory = Callable[[Mapping[str, Any]], Classifier]


def _heuristic(options: Mapping[str, Any]) -> Classifier:
    return HeuristicClassifier()


CLASSIFIERS: dict[str, ClassifierFactory] = {
    "heuristic": _heuristic,
}


def build_classifier(name: str, options: Mapping[str, Any] | None = None) -> Classifier:
    try:
        factory = CLASSIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}") from None
    return factory(options or {})
