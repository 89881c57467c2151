"""The default router (`tiered`): quick tasks, and only those, go to the small local model; everything else is
ranked for medium against complex; the reasons say why in words; dataset marks decide nothing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from gateway.vocab.settings_model import RoutingSettings
from router_core.classifiers.tiered import TieredClassifier
from router_core.difficulty import SOURCE_MARKS, load_head
from router_core.kinds import traffic_kind
from router_core.policy import tier_for
from router_core.registry import build_classifier
from router_core.token_features import FEATURES
from router_core.trivial import assess
from router_core.types import Conversation, Turn

ROOT = Path(__file__).resolve().parents[2]
CUTOFFS = (0.35, 0.62)
# What the issue typed into the demo: every one went to `simple` before.
HARD = {
    "Design a fault-tolerant multi-region payment system for a bank, with consistency models, sagas and a "
    "migration plan": "asks for a design",
    "Write a lock-free hash map in C++": "asks for code",
    "Derive the Black-Scholes equation": "asks for a proof or derivation",
    "Prove there are infinitely many primes": "asks for a proof or derivation",
    "Design a banking API": "asks for a design",
}
QUICK = {
    "hi": "greeting or thanks",
    "thanks, that's really helpful!": "greeting or thanks",
    "Translate 'good morning' into Spanish": "translation",
    "Fix the grammar: me and him goes to school yesterday": "fixing or rewording a short text",
    "Extract every email address from this text:\nWrite to bob@example.com or to the design team at "
    "design@example.org about the system architecture.": "extraction",
    "Classify the sentiment of this review: I loved it": "classification",
    "Turn this into a JSON list: apples, pears, plums": "formatting",
    "what is 15% of 80?": "unit conversion or one sum",
    "convert 5 km to miles": "conversion",
    "What does HTML stand for?": "a word's meaning",
}


def tiered() -> TieredClassifier:
    clf = build_classifier("tiered", {"cutoffs": CUTOFFS})
    assert isinstance(clf, TieredClassifier)
    return clf


def one(text: str) -> Conversation:
    return Conversation((Turn("user", text),))


def tier(score: float) -> str:
    return tier_for(score, CUTOFFS)


def test_the_default_pipeline_is_tiered_everywhere_it_is_written() -> None:
    assert RoutingSettings().classifiers[0] == "tiered"
    assert tomllib.loads((ROOT / "config.toml").read_text())["routing"]["classifiers"][0] == "tiered"


@pytest.mark.parametrize("text", list(HARD))
def test_hard_prompts_never_go_to_the_small_model_and_say_why_in_words(text: str) -> None:
    score, reasons = tiered().score_with_reasons(one(text))
    assert tier(score) != "simple"
    assert reasons[0].startswith(f"not a quick task: {HARD[text]} (")


@pytest.mark.parametrize("text", list(QUICK))
def test_quick_tasks_go_to_the_small_model_and_say_which_task(text: str) -> None:
    score, reasons = tiered().score_with_reasons(one(text))
    assert tier(score) == "simple" and reasons == (f"quick task: {QUICK[text]}",)


@pytest.mark.parametrize("text", [
    "Hi!\nDesign a payment system for a bank",                      # a greeting does not make it quick
    "translate this poem into French keeping the rhyme and the metre",  # more than a literal rendering
    "What are some good books to buy for a sci-fi fan?",            # open-ended, not one fact
    "Who was the first lead vocal for the rock band Starship?",     # knowledge: where small models fail most
    "Which of these is a mammal?\nA) shark\nB) dolphin\nC) trout\nD) eel",   # a multiple-choice question
    "Tom has 3 apples and buys 5 more bags of 4 apples. How many apples does he have?",  # a maths problem
    "fix the bug in this function:\n" + "def f(x):\n    return x +\n" * 3,
])
def test_what_only_looks_quick_is_not(text: str) -> None:
    score, reasons = tiered().score_with_reasons(one(text))
    assert tier(score) != "simple" and reasons[0].startswith("not a quick task"), reasons


def test_a_question_on_a_pasted_text_is_reading_medium_at_most() -> None:
    trace = "\n".join(f'    at com.example.Service.handle(Service.java:{40 + i})' for i in range(8))
    crash = 'Exception in thread "main" java.lang.NullPointerException'
    text = f"which file and line did it crash on?\n\n{crash}\n{trace}"
    verdict = assess(text)
    assert verdict.lookup and not verdict.trivial
    score, reasons = tiered().score_with_reasons(one(text))
    assert tier(score) == "medium" and "medium at most" in reasons


def test_a_long_turn_is_not_a_quick_task_whatever_it_opens_with() -> None:
    assert not assess("thanks! " + "now write the whole migration runbook for every service. " * 5).trivial
    assert not assess("What does " + "x" * 200 + " mean?").trivial


def test_the_kinds_of_traffic() -> None:
    assert traffic_kind("Which of these is a mammal?\nA) shark\nB) dolphin") == "multiple_choice"
    assert traffic_kind("Write a python function that reverses a list") == "code"
    assert traffic_kind("A shop sells 3 pens for $2. How much do 12 pens cost?") == "maths"
    assert traffic_kind("Tell me about the history of Rome") == "chat"


def test_dataset_marks_decide_nothing() -> None:
    # Answer options, the question apart from them and "I and III only" lists told the training sources
    # apart: held at zero, they have no weight and no share in any prompt's score, with them or without.
    head = load_head()
    n = len(FEATURES)
    for name in SOURCE_MARKS:
        i = FEATURES.index(name)
        assert head.weights[len(head.weights) - n + i] == 0.0
        assert head.scaling.lo[i] == head.scaling.hi[i] == head.scaling.mean[i] == 0.0
    plain = "Explain how a hash map handles collisions and when it resizes."
    _, reasons = tiered().score_with_reasons(one(plain))
    assert not any(r.startswith(("answer options", "question:", "Roman-numeral")) for r in reasons)


def test_each_kind_is_ranked_by_its_length_within_it_and_chat_by_the_head() -> None:
    clf = tiered()
    assert set(clf.tables) == {"multiple_choice", "maths", "code"}
    short, long = ("A farmer has 3 cows and buys 4 more. How many cows now?",
                   "A farmer has 3 cows and buys 4 more each week for 7 weeks, then sells a third of them and "
                   "splits the rest equally among his 2 sons and 1 daughter. How many cows does each get?")
    (s, why), (l_, _) = clf.score_with_reasons(one(short)), clf.score_with_reasons(one(long))
    assert l_ > s and why[1].startswith("a maths problem, ranked by its length")
    chat = clf.score_with_reasons(one("Tell me about the causes of the French revolution and their legacy."))
    assert not any("ranked by its length" in r for r in chat[1])


def test_scores_keep_the_pipelines_contract_and_the_rankings_order() -> None:
    clf = tiered()
    texts = ["hi", "Design a banking API", "Tell me about Rome", "Write a lock-free hash map in C++",
             "Derive the Black-Scholes equation from a replicating portfolio, step by step"]
    scores = np.array([clf.score_now(one(t)).score for t in texts])
    assert ((0 <= scores) & (scores <= 1)).all()
    assert scores[0] < CUTOFFS[0] <= scores[1:].min()


def test_a_hostile_turn_costs_linear_work() -> None:
    # Two million newlines (a body within server.max_body_bytes) made the options pattern (`\n\s*A.`)
    # quadratic: hours of CPU on the event loop for one request (20,000 took 3.6 s). Run apart, so a
    # regression fails on the timeout instead of hanging the suite.
    import subprocess
    import sys

    code = ("from router_core.registry import build_classifier\n"
            "from router_core.types import Conversation, Turn\n"
            "c = build_classifier('tiered', {'cutoffs': (0.35, 0.62)})\n"
            "for text in ('\\n' * 2_000_000, ' \\n' * 1_000_000, 'hi\\n' + 'x' * 2_000_000 + '\\nthanks'):\n"
            "    print(c.score_with_reasons(Conversation((Turn('user', text),)))[1][0])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(("quick task", "not a quick task")) for line in out.stdout.splitlines())
