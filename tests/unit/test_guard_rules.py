"""The near-miss guard's hard rules: pure functions on two question texts."""

from __future__ import annotations

import pytest

from gateway.cache.guard import hard_reject, hard_rejects, narrowed


@pytest.mark.parametrize(("a", "b"), [
    ("Is port 6379 open?", "Is port 6380 open?"),                                   # numbers
    ("Is port 6379 open?", "Is port 6379 closed?"),                                 # antonyms
    ("Should I use Redis?", "Should I not use Redis?"),                             # negation on one side
    ("When did rap music start?", "Who started rap music?"),                        # another kind of answer
    ("How do I learn about materials?", "Where can I learn about materials?"),
    ("Why do women only shave their legs?", "Why do women shave their legs?"),      # restricted on one side
    ("Where can I find the best hotel in Bhopal?", "Where can I find the best hotel in Bhopal for parties?"),
    ("Who are the most famous straight actors?", "Who are the most famous gay actors?"),
])
def test_near_misses_are_rejected(a: str, b: str) -> None:
    assert hard_reject(a, b) and hard_reject(b, a)


@pytest.mark.parametrize(("a", "b"), [
    ("What is the best way to learn Python?", "How do I learn Python best?"),        # what/how interchangeable
    ("Which is the best rock band of all time?", "What is the best rock band of all time?"),
    ("What are Hanes boxer briefs made of? How are they made?", "What are Hanes boxer briefs made of?"),
    ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
])
def test_paraphrases_pass_the_rules(a: str, b: str) -> None:
    assert not hard_reject(a, b) and not hard_reject(b, a)


def test_narrowed_needs_a_qualifier_in_the_same_sentence() -> None:
    assert narrowed("What is a joint venture?", "What is a joint venture in finance?")
    assert not narrowed("What is a joint venture?", "What is a joint venture? Give an example.")
    assert not narrowed("What is a joint venture?", "What is a joint venture, really?")
    assert not narrowed("What is a joint venture?", "What is a joint venture?")
    assert not narrowed("What is photosynthesis?", "What is photosynthesis exactly?")


def test_one_prompt_against_its_candidates_is_each_pair_on_its_own() -> None:
    prompt = "Is port 6379 open?"
    others = ["Is port 6380 open?", "Is port 6379 closed?", "Is the port 6379 open?", "Is port 6379 open now?"]
    assert hard_rejects(prompt, others) == [hard_reject(prompt, o) for o in others] == [True, True, False, False]
    assert hard_rejects(prompt, []) == []
