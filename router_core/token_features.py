"""The difficulty model's named features, computed for a whole batch of prompts from their token ids.

Length and shape (characters, lettered options' characters, characters per token, digits, operators,
lines, a question mark, negations such as "which is NOT", Roman-numeral statement lists), task-type
flags (maths, code, reasoning, writing, extraction, chit-chat: whole words and phrases, matched as token
sequences ending on a word boundary) and the number of user turns.

Everything that reads tokens is a table look-up over the batch's ids end to end (numpy), so a batch of
32 costs little more than one: the per-prompt Python work is a few string methods.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from router_core.static_embed import Tokens

TASK_PHRASES: dict[str, tuple[str, ...]] = {
    "maths": ("calculate", "solve", "equation", "integral", "derivative", "probability", "how many", "how much",
              "percent", "sum of", "prove"),
    "code": ("```", "def", "function", "class", "python", "javascript", "sql", "code", "compile", "bug", "regex",
             "api", "script"),
    "reasoning": ("why", "explain", "reason", "logic", "puzzle", "step by step", "infer", "deduce", "compare",
                  "analyze", "analyse"),
    "writing": ("write", "essay", "story", "poem", "email", "letter", "blog", "article", "rewrite", "draft", "lyrics"),
    "extraction": ("extract", "summarize", "summarise", "list all", "classify", "categorize", "categorise",
                   "from the text", "from the passage"),
}
GREETINGS = ("hi", "hello", "hey", "thanks", "thank you", "good morning", "good night", "how are you")  # as the opening
NEGATIONS = ("not", "except", "false", "incorrect", "least")
ROMAN = ("ii", "iii", "iv")
MATH_SYMBOLS = "=+*/^<>"
OPERATORS = "-+*/^="
FEATURES = ("log_chars", "log_question_chars", "log_options_chars", "log_chars_per_token", "log_digits",
            "log_math_symbols", "log_lines", "has_question_mark", "log_negations", "log_roman_items",
            *(f"task:{t}" for t in TASK_PHRASES), "task:chit-chat", "turns")
FLAGS = frozenset(f for f in FEATURES if f.startswith("task:") or f.startswith("has_"))
_options = re.compile(r"\n[^\S\n]*A[.)]")   # [^\S\n]: not \s, which made a run of newlines quadratic
_GREETING_BIT = 1 << len(TASK_PHRASES)
_MATHS_BIT = 1 << list(TASK_PHRASES).index("maths")


class TokenFeatures:
    def __init__(self, tokenizer: Any) -> None:
        size = tokenizer.get_vocab_size()
        names = [""] * size
        for token, i in tokenizer.get_vocab().items():
            names[i] = token
        bare = [t[2:] if t.startswith("##") else t for t in names]
        self._vocab = size
        self._continues = np.array([t.startswith("##") for t in names])
        self._word = np.array([any(ch.isalnum() for ch in b) for b in bare]) & ~self._continues
        self._ends_digit = np.array([b[-1:].isdigit() for b in bare])
        self._starts_digit = np.array([b[:1].isdigit() for b in bare])
        self._operator = np.array([b in tuple(OPERATORS) for b in names])
        self._counts = np.array([[sum(ch.isdigit() for ch in b), sum(ch in MATH_SYMBOLS for ch in b),
                                  float(t in NEGATIONS), float(t in ROMAN)] for t, b in zip(names, bare, strict=True)],
                                dtype=np.float64)
        bits: dict[tuple[int, ...], int] = {}
        phrases = [(p, 1 << k) for k, ps in enumerate(TASK_PHRASES.values()) for p in ps]
        for phrase, bit in [*phrases, *((g, _GREETING_BIT) for g in GREETINGS)]:
            ids = tuple(tokenizer.encode(phrase, add_special_tokens=False).ids)
            bits[ids] = bits.get(ids, 0) | bit
        # Per phrase length n: the phrases' codes (ids read as digits in base `size`), sorted, and their bits.
        self._phrases: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for n in sorted({len(k) for k in bits}):
            if size ** n >= 2 ** 63:
                raise ValueError(f"a phrase of {n} tokens does not fit one int64 code")
            found = sorted((self._code(k), b) for k, b in bits.items() if len(k) == n)
            self._phrases[n] = (np.array([c for c, _ in found], dtype=np.int64),
                                np.array([b for _, b in found], dtype=np.int64))
        # The same tables as sets and dicts, for one text at a time (`_one`).
        self._phrase_sets = {n: {k: b for k, b in bits.items() if len(k) == n} for n in self._phrases if n > 1}
        self._unigrams = {k[0]: b for k, b in bits.items() if len(k) == 1}
        self._counted = {i: row for i, row in enumerate(self._counts.tolist()) if any(row)}
        self._continues_set = frozenset(np.flatnonzero(self._continues).tolist())
        self._word_ids = frozenset(np.flatnonzero(self._word).tolist())
        self._operator_ids = frozenset(np.flatnonzero(self._operator).tolist())
        self._ends_digit_ids = frozenset(np.flatnonzero(self._ends_digit).tolist())
        self._starts_digit_ids = frozenset(np.flatnonzero(self._starts_digit).tolist())

    def _code(self, ids: Sequence[int]) -> int:
        code = 0
        for i in ids:
            code = code * self._vocab + i
        return code

    def _flags(self, a: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Per token: the bits of the phrases that start there (and the maths bit at digit-operator-digit)."""
        n_tokens = len(a)
        flags = np.zeros(n_tokens, dtype=np.int64)
        for n, (codes, bits) in self._phrases.items():
            m = n_tokens - n + 1
            if m <= 0:
                continue
            code = a[:m].copy()
            for j in range(1, n):
                code = code * self._vocab + a[j:j + m]
            k = np.minimum(np.searchsorted(codes, code), len(codes) - 1)
            hit = (codes[k] == code) & (owner[:m] == owner[n - 1:n - 1 + m])
            hit[: m - 1] &= ~self._continues[a[n:]]   # the phrase ends where a word ends
            flags[:m] |= np.where(hit, bits[k], 0)
        if n_tokens >= 3:
            sum_like = (self._ends_digit[a[:-2]] & self._operator[a[1:-1]] & self._starts_digit[a[2:]]
                        & (owner[:-2] == owner[2:]))
            flags[:-2] |= np.where(sum_like, _MATHS_BIT, 0)
        return flags

    def _one(self, ids: Sequence[int]) -> tuple[int, list[float], bool]:
        """`_flags` and the counts for one text, with sets and dicts instead of arrays: the same values
        (a test compares the two on every shared prompt), without the fixed cost of many small array
        operations, which is most of a one-prompt decision."""
        n_tokens = len(ids)
        if not n_tokens:
            return 0, [0.0] * self._counts.shape[1], False
        task = 0
        continues = self._continues_set
        starts: dict[int, int] = {}   # position -> bits of the phrases that start there
        for t in self._unigrams.keys() & set(ids):
            for i, token in enumerate(ids):
                if token == t and (i + 1 >= n_tokens or ids[i + 1] not in continues):
                    starts[i] = starts.get(i, 0) | self._unigrams[t]
        for n, table in self._phrase_sets.items():
            if n_tokens < n:
                continue
            grams = list(zip(*(ids[j:] for j in range(n)), strict=False))   # shorter rows end it
            for gram in set(grams) & table.keys():
                for i, other in enumerate(grams):
                    if other == gram and (i + n >= n_tokens or ids[i + n] not in continues):
                        starts[i] = starts.get(i, 0) | table[gram]
        if self._operator_ids.intersection(ids):
            for i in range(1, n_tokens - 1):
                if ids[i] in self._operator_ids and ids[i - 1] in self._ends_digit_ids and \
                        ids[i + 1] in self._starts_digit_ids:
                    starts[i - 1] = starts.get(i - 1, 0) | _MATHS_BIT
        for bits in starts.values():
            task |= bits
        first = next((i for i, t in enumerate(ids) if t in self._word_ids), None)
        chit_chat = first is not None and bool(starts.get(first, 0) & _GREETING_BIT)
        rows = [r for r in map(self._counted.get, ids) if r]
        counts = [float(sum(col)) for col in zip(*rows, strict=True)] if rows else [0.0] * self._counts.shape[1]
        return task, counts, chit_chat

    def one(self, text: str, ids: Sequence[int], turns: int = 1) -> np.ndarray:
        """`compute` for a single text (`ids`: `StaticEmbedder.token_ids([text])[0]`)."""
        task, counts, chit_chat = self._one(ids)
        return np.array(_row(text, len(ids), task, counts, chit_chat, turns))

    def compute(self, texts: Sequence[str], tokens: Tokens, turns: Sequence[int] | None = None) -> np.ndarray:
        """One row of FEATURES per text (`tokens` is `StaticEmbedder.tokenize(texts)`)."""
        n = len(texts)
        a, starts, sizes = tokens.ids, tokens.starts, tokens.counts
        full = np.flatnonzero(sizes > 0)
        task = np.zeros(n, dtype=np.int64)
        counts = np.zeros((n, self._counts.shape[1]))
        chit_chat = np.zeros(n, dtype=bool)
        if len(full):
            flags = self._flags(a, tokens.owner())
            task[full] = np.bitwise_or.reduceat(flags, starts[full])
            counts[full] = np.add.reduceat(self._counts[a], starts[full], axis=0)
            words = np.flatnonzero(self._word[a])   # a text's opening word: its first word token
            if len(words):
                first = words[np.minimum(np.searchsorted(words, starts[:-1]), len(words) - 1)]
                chit_chat = (first >= starts[:-1]) & (first < starts[1:]) & ((flags[first] & _GREETING_BIT) > 0)
        lengths, bits, counted, chat = sizes.tolist(), task.tolist(), counts.tolist(), chit_chat.tolist()
        return np.array([_row(t, lengths[i], bits[i], counted[i], chat[i], 1 if turns is None else turns[i])
                         for i, t in enumerate(texts)]).reshape(n, len(FEATURES))


_LOGGED = [f.startswith("log_") or f == "turns" for f in FEATURES]
# What each feature is, in words (a routed answer's `smr.reasons`).
_LABELS = {"log_chars": "length", "log_question_chars": "question", "log_options_chars":
           "answer options", "log_chars_per_token": "characters per token", "log_digits": "digits",
           "log_math_symbols": "maths symbols", "log_lines": "line breaks", "has_question_mark": "question mark",
           "log_negations": "negations (not, except, ...)", "log_roman_items": "Roman-numeral items",
           "turns": "user turns"}
_CHARS = frozenset({"log_chars", "log_question_chars", "log_options_chars"})


def describe(name: str, value: float) -> str:
    """A feature and this prompt's value of it, in words: `answer options: none`, `length: 74 chars`,
    `task code: yes` (`value` as FEATURES holds it, logged or not)."""
    if name.startswith("task:"):
        return f"task {name[5:]}: {'yes' if value else 'no'}"
    if name in FLAGS:
        return f"{_LABELS.get(name, name)}: {'yes' if value else 'no'}"
    raw = math.expm1(value) if _LOGGED[FEATURES.index(name)] else value
    if name == "log_chars_per_token":
        return f"{_LABELS[name]}: {raw:.1f}"
    if name in _CHARS:
        return f"{_LABELS[name]}: {round(raw)} chars" if round(raw) else f"{_LABELS[name]}: none"
    return f"{_LABELS.get(name, name)}: {round(raw)}"


def _row(text: str, n_tokens: int, task: int, counts: Sequence[float], chit_chat: bool, turns: int) -> list[float]:
    """One text's FEATURES from its token-level parts and a few string methods."""
    m = _options.search(text)
    question = len(text) if m is None else m.start()
    values = [len(text), question, len(text) - question, len(text) / (n_tokens + 1.0), counts[0], counts[1],
              text.count("\n"), 1.0 if "?" in text[:question] else 0.0, counts[2], counts[3],
              *((task >> k) & 1 for k in range(len(TASK_PHRASES))), 1.0 if chit_chat else 0.0, turns]
    return [math.log1p(v) if logged else float(v) for v, logged in zip(values, _LOGGED, strict=True)]
