"""The difficulty head as the gateway applies it: how likely a cheap model is to fail a conversation,
learned offline from many models' outcomes (fitting, targets and leave-source-out evaluation live in
`router_lab.difficulty` and `router_lab.held_out`; this module is what serving loads).

Features: a static embedding of the user turns (`static_embed`) or MiniLM's, then length and structure,
task-type flags and the number of turns, all read off the same token ids (`token_features`), clipped to
the training range (`Scaling`). The score is the head's linear prediction through the logistic map
fitted so the configured cut-offs split the training prompts 50 / 30 / 20 (`difficulty_logits`).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from router_core.token_features import FEATURES

HEAD_PATH = Path(__file__).resolve().parent / "classifiers" / "difficulty_head.json"
# The head for each embedding the text part can read: the static one (CPU, the default) and MiniLM itself
# (the transformer path, the default where a GPU is present).
HEAD_PATHS = {"static": HEAD_PATH, "minilm": HEAD_PATH.with_name("difficulty_head_minilm.json")}
EMBEDDINGS = tuple(HEAD_PATHS)
EXTRA_FEATURES = FEATURES
# Features that say which dataset a prompt came from more than how hard it is (lettered answer options,
# the question apart from them, "I and III only" lists): held at zero in the fit, so they never decide
# the tier of a prompt, with them or without them.
SOURCE_MARKS = ("log_options_chars", "log_question_chars", "log_roman_items")


class Scaling(msgspec.Struct, frozen=True):
    """How the named features enter the head: clipped to the training prompts' range (0.5th to 99.5th
    percentile: nothing is extrapolated, a two-character "hi" counts as the shortest prompts trained on),
    then centred and scaled. Flags are scaled by 0.5 (a binary feature's largest spread), not by their
    own spread, so a flag seen on a few training prompts cannot swing a score; a feature constant in
    training (the number of turns: every training prompt is one turn) gets no say."""
    mean: list[float]
    std: list[float]
    lo: list[float]
    hi: list[float]

    def apply(self, extra: np.ndarray) -> np.ndarray:
        return (np.clip(extra, self.lo, self.hi) - np.asarray(self.mean)) / np.asarray(self.std)


class LengthRank(msgspec.Struct, frozen=True):
    """One kind's ranking by length, on the head's scale: the prompt's log length placed among the training
    prompts of its kind (`loglen`, quantiles), read off the head's predictions for them (`pred`, the same
    quantiles): a longer prompt of the kind ranks higher, and the kind keeps the head's spread."""
    loglen: list[float]
    pred: list[float]

    def at(self, loglen: float) -> float:
        return float(np.interp(loglen, self.loglen, self.pred))


class DifficultyHead(msgspec.Struct, frozen=True):
    weights: list[float]           # one per embedding dimension, then one per extra feature
    bias: float
    feature_names: list[str]       # EXTRA_FEATURES when trained
    scaling: Scaling
    scale: float = 1.0             # score = sigmoid(scale * prediction + shift)
    shift: float = 0.0
    alpha: float = 10.0
    length_boost: float = 0.0
    chat_weight: float = 1.0       # each chat prompt's weight in the fit (benchmark prompts weigh 1)
    target: str = "rasch"
    embedding: str = "static"      # what the text part reads: "static" (static_embed) or "minilm" (Embedder)
    trained_on: list[str] = []
    licences: list[str] = []
    cv: dict[str, float] = {}
    length_ranked: dict[str, LengthRank] = {}   # the kinds ranked by length (`tiered` classifier)


def load_head(path: Path = HEAD_PATH) -> DifficultyHead:
    head = msgspec.json.decode(path.read_bytes(), type=DifficultyHead)
    if head.embedding not in EMBEDDINGS:
        raise ValueError(f"{path}: embedding {head.embedding!r} is none of {', '.join(EMBEDDINGS)}")
    if tuple(head.feature_names) != EXTRA_FEATURES:
        raise ValueError(f"{path}: trained on features {head.feature_names}; this version computes "
                         f"{list(EXTRA_FEATURES)}: retrain it (smr train --difficulty)")
    return head


def difficulty_logits(head: DifficultyHead, x: np.ndarray) -> np.ndarray:
    """The score's logit for rows of the head's design (text vector, then the scaled named features)."""
    return head.scale * (x @ np.asarray(head.weights) + head.bias) + head.shift
