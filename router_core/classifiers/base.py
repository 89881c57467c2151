"""The classifier contract (RouteLLM's, made async): a score in [0, 1], the chance the cheap model
is not good enough. Classifiers that are pure CPU and fast also offer `score_now` so the pipeline
can call them without scheduling a task."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from router_core.types import Conversation


class ClassifierError(Exception):
    """The classifier could not score this conversation; the pipeline falls through to the next."""


class Abstain(ClassifierError):
    """The classifier declines a conversation outside what it knows (not a failure: nothing is logged
    as a warning); the pipeline asks the next one."""


@runtime_checkable
class Classifier(Protocol):
    name: str

    async def score(self, conv: Conversation) -> float: ...


@runtime_checkable
class SyncClassifier(Protocol):
    name: str

    def score_now(self, conv: Conversation) -> float: ...
