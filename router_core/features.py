"""Pure text features for the rule-based classifier (and as extra inputs for learned ones)."""

from __future__ import annotations

import math
import re

import msgspec

from router_core.types import Conversation

# Words that signal work a small model does badly: design, reasoning, debugging, proof.
COMPLEX_WORDS = (
    "architect", "architecture", "design", "debug", "optimise", "optimize", "prove", "proof",
    "derive", "distributed", "scalab", "concurren", "trade-off", "tradeoff", "refactor",
    "implement", "algorithm", "complexity", "security", "threat model", "microservice",
    "fault-toleran", "consensus", "formal", "theorem", "migrate", "migration", "benchmark",
)
# Words that signal explanation or moderate analysis.
MEDIUM_WORDS = (
    "explain", "compare", "difference between", "why ", "how does", "how do", "analy",
    "summar", "pros and cons", "describe", "evaluate", "write a function", "write code",
    "example", "review",
)
# Words that signal a short lookup or a mechanical transformation.
SIMPLE_WORDS = (
    "translate", "what is the capital", "spell", "define ", "definition of", "synonym",
    "convert ", "capitalize", "what time", "say hello", "hello", "thank", "list three",
    "fix the typo", "correct the grammar", "what is ", "who is ", "when was ",
)
CONSTRAINT_WORDS = (
    "must", "should", "ensure", "without", "at least", "at most", "requirement", "constraint",
    "no more than", "exactly", "handle", "support",
)
_code_fence = re.compile(r"```")
_word = re.compile(r"\w+")
_step_by_step = re.compile(r"step[- ]by[- ]step|show your work|reason carefully", re.I)
_math = re.compile(r"\d+\s*[-+*/^=]\s*\d+|\\frac|\bintegral\b|\bequation\b", re.I)


class Features(msgspec.Struct, frozen=True):
    tokens: int
    last_user_tokens: int
    turns: int
    code_blocks: int
    questions: int
    complex_hits: int
    medium_hits: int
    simple_hits: int
    constraints: int
    step_by_step: bool
    math: bool


def estimate_tokens(text: str) -> int:
    """Rough token count (about four characters a token, at least one per word)."""
    return max(len(text) // 4, len(_word.findall(text)) * 3 // 4)


def _hits(text: str, words: tuple[str, ...]) -> int:
    return sum(1 for w in words if w in text)


def extract(conv: Conversation) -> Features:
    last = conv.last_user
    low = last.lower()
    all_text = conv.all_text
    return Features(
        tokens=estimate_tokens(all_text),
        last_user_tokens=estimate_tokens(last),
        turns=sum(1 for t in conv.turns if t.role in ("user", "assistant")),
        code_blocks=len(_code_fence.findall(all_text)) // 2,
        questions=last.count("?"),
        complex_hits=_hits(low, COMPLEX_WORDS),
        medium_hits=_hits(low, MEDIUM_WORDS),
        simple_hits=_hits(low, SIMPLE_WORDS),
        constraints=_hits(low, CONSTRAINT_WORDS),
        step_by_step=bool(_step_by_step.search(last)),
        math=bool(_math.search(last)),
    )


# ------------------------------------------------------------------ inputs of the embedding head
_digit = re.compile(r"\d")
_symbol = re.compile(r"[=+*/^<>]")
_negated_ask = re.compile(r"\b(not|except|false|incorrect|least)\b", re.I)
_roman_items = re.compile(r"\b(I|II|III|IV)\b")
_options = re.compile(r"\n[^\S\n]*A[.)]")   # [^\S\n]: not \s, which made a run of newlines quadratic

STRUCTURE_FEATURES = ("log_chars", "log_question_chars", "log_options_chars", "log_digits", "log_math_symbols",
                      "log_lines", "has_question_mark", "log_negated_ask", "log_roman_items")


def structure(text: str) -> list[float]:
    """Length and shape signals of a prompt, in the order of STRUCTURE_FEATURES: how long it is, how
    long the question is apart from any lettered options, digits and operators (calculation), lines,
    a negated ask ("which is NOT ..."), and Roman-numeral statement lists ("I and III only")."""
    m = _options.search(text)
    question = text[: m.start()] if m else text
    return [
        math.log1p(len(text)),
        math.log1p(len(question)),
        math.log1p(len(text) - len(question)),
        math.log1p(len(_digit.findall(text))),
        math.log1p(len(_symbol.findall(text))),
        math.log1p(text.count("\n")),
        1.0 if "?" in question else 0.0,
        math.log1p(len(_negated_ask.findall(question))),
        math.log1p(len(_roman_items.findall(text))),
    ]
