"""Is this a task a 350M local model can do at all? The `simple` tier's own decision, kept apart from the
difficulty ranking above it (which only splits `medium` from `complex`).

Precise on purpose: a prompt is trivial only when its last user turn is one of the quick tasks a small
model handles (greetings and thanks, translating a phrase, fixing or rewording a short text, extracting or
classifying, reformatting, a word's meaning, a unit conversion or one sum, a simple assistant action) AND
nothing in it asks for more (design, proof, code, analysis, advice with stakes, long writing, a maths
problem, a multiple-choice question). Anything else is not trivial.

One-fact questions ("who was the first lead vocal of Starship?") are not quick tasks here, though a person
might think so: on the outcome data they are where weak and strong models differ most (a gap 0.55 standard
deviations above the average chat prompt on AlpacaEval's helpful_base: knowledge is what a small model
lacks), so they are ranked like any other prompt. A short question on a text pasted with it ("which file
and line did it crash on?" above a stack trace) is reading, not knowledge: `lookup`, medium at most.

Pure: a few regular expressions over at most a few hundred characters, well under a millisecond.
"""

from __future__ import annotations

import re

import msgspec

from router_core.kinds import traffic_kind

_KIND_WORDS = {"multiple_choice": "a multiple-choice question", "maths": "a maths problem"}


class Verdict(msgspec.Struct, frozen=True):
    trivial: bool
    why: str              # in words, for `smr.reasons`: "quick task: greeting" / "not a quick task: asks for a proof"
    lookup: bool = False  # not trivial, but a short question whose answer is in the text pasted with it:
                          # reading, not knowledge, so never worth the strongest model
    asks_for: tuple[str, ...] = ()   # what makes it more than a quick task, where words say so ("asks for a design")


def _words(*ws: str) -> str:
    return r"\b(?:" + "|".join(ws) + r")"


def _any(*ws: str) -> str:
    """Alternatives to be matched at a word's start (the one `\\b` is `_HARD`'s, shared by all of them)."""
    return "(?:" + "|".join(ws) + ")"


# What makes a prompt more than a quick task, each with the words a user would recognise. Stems match the
# start of a word ("analy[sz]e", "migrat"); a `\\b` ends the ones that would otherwise match longer words.
_HARD_PARTS: tuple[tuple[str, str], ...] = (
    ("asks for a design", _any("design", "architect", "blueprint", "system for", "schema for", "infrastructure")),
    ("asks for a proof or derivation", _any("prove", "proof", "derive", "derivation", "theorem", "lemma",
                                            "show that", "demonstrate that")),
    ("asks for code", _any(
        "implement", "write (?:a|an|the|me|some)?\\s*(?:\\w+\\s){0,3}(?:function|program|script|class|module|app"
        "|code|parser|compiler|api)", "refactor", "debug", "fix (?:this|my|the) (?:code|bug|function|query)",
        "lock-free", "multithread", "concurren", "algorithm", "data structure", "unit tests?", "sql quer", "regex",
        "big-?o\\b", "time complexity", "stack trace", "traceback", "segfault", "exception", "compile")),
    ("asks for analysis", _any(
        "analy[sz]e", "analysis", "evaluate", "assess", "critique", "compare", "trade-?offs?", "pros and cons",
        "implications", "root cause", "investigate", "review (?:this|my|the)", "strategy", "optimi[sz]", "recommend",
        "bottleneck", "best (?:way|approach|option|practice)", "should (?:i|we)\\b", "better", "improve",
        "issues? with", "problems? with", "risks?\\b")),
    ("asks for reasoning", _any("why\\b", "step by step", "reason(?:ing)? through", "explain how", "explain why",
                                  "what would happen", "puzzle", "riddle", "paradox", "how does", "how do\\b")),
    ("maths beyond one sum", _any(
        "solve", "equation", "integral", "derivative", "probability", "expected value", "matri(?:x|ces) (?:of|"
        "multiplication|inverse)", "eigen", "limit of", "(?:infinite|power|taylor|fourier|geometric|arithmetic) series",
        "statistic", "regression", "inequalit", "solutions? (?:of|to)", "integers?\\b", "primes?\\b(?! minister)",
        "how many ways", "optimal")),
    ("advice with stakes", _any(
        "legal", "lawsuit", "contract", "liabilit", "diagnos", "symptom", "dosage", "medication", "treatment",
        "tax(?:es)?\\b", "invest", "portfolio", "mortgage", "retirement", "financial", "valuation", "compliance",
        "gdpr", "hipaa")),
    ("asks for long writing", _any(
        "essay", "article", "report", "story", "poem", "blog", "cover letter", "speech", "proposal", "business plan",
        "chapter", "screenplay", "thesis", "lesson plan", "curriculum", "whitepaper", "documentation")),
    ("asks for more than a literal rendering", _any(
        "rhym", "rhythm", "puns?\\b", "wordplay", "idiom", "nuance", "preserv", "keeping the", "not word for word",
        "literary", "poetic", "in the style of")),
    ("asks to debug", _any(
        "what'?s wrong", "errors? (?:with|in)\\b", "wrong with", "doesn'?t work", "does not work", "not working",
        "broken", "bugs?\\b", "why (?:does|is|do|did)\\b")),
    ("an open-ended question", _any(
        "what are (?:some|the best|good|your)", "some (?:good|great|famous|ways|tips)", "ways to", "tips\\b",
        "ideas\\b", "examples of", "methods", "norms", "advice", "how (?:can|should|could|would) (?:i|we|you|one)\\b",
        "how to\\b")),
    ("asks for a plan", _any(
        "plan\\b", "roadmap", "migrat", "scale (?:up|out|to)", "at scale", "scalab", "distributed", "fault-?toleran",
        "multi-region", "high availability", "consistency", "security", "threat model")),
)
# One pass over the text for all of them (named groups say which matched): a few hundred microseconds less.
# Matched against the lower-cased text, with one word boundary for all of them (no re.I, and no boundary
# tried per alternative: a few times faster); a code fence is found apart.
_HARD = re.compile(r"\b(?:" + "|".join(f"(?P<h{i}>{p})" for i, (_, p) in enumerate(_HARD_PARTS)) + ")")
_CODE_ASK = next(i for i, (why, _) in enumerate(_HARD_PARTS) if why == "asks for code")

# The quick tasks, each a pattern on the last user turn (or on the line that asks, when a text comes with it).
_QUICK: tuple[tuple[str, re.Pattern[str]], ...] = tuple((why, re.compile(p, re.I)) for why, p in (
    ("greeting or thanks", r"^\W*(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening|night)|thanks?"
                           r"|thank you|thx|ty|cheers|bye|goodbye|see you|ok(?:ay)?|cool|great|nice|awesome"
                           r"|perfect|got it|how are you|how's it going|what'?s up|sup|good job|well done|lol|haha)\b"
                           r"(?![^\n]*\b(?:can|could|would|will) you\b|[^\n]*\b(?:please|help|write|tell|explain"
                           r"|what is|how do|why)\b)(?:\W+\w+){0,5}\W*$"),
    ("translation", r"^\W*(?:translate|how (?:do|would) (?:you|i) say|what(?:'s| is) .{1,60} in (?:french|spanish"
                    r"|german|italian|portuguese|japanese|chinese|korean|russian|arabic|dutch|hindi|english))\b"),
    ("fixing or rewording a short text", _words(
        "fix (?:the |any |my )?(?:typos?|spelling|grammar|punctuation)", "correct (?:the |any |my )?(?:typos?|spelling"
        "|grammar)", "proofread", "rephrase", "paraphrase", "reword", "rewrite (?:this|the following|it) (?:sentence"
        "|line|phrase|more|less|in)", "make (?:this|it) (?:more )?(?:formal|polite|casual|shorter|friendlier)",
        "shorten (?:this|the)", "capitali[sz]e", "uppercase", "lowercase")),
    ("extraction", _words(
        "extract", "pull out", "list (?:all |every |each )?(?:the )?(?:names?|emails?|email addresses|dates?|numbers?"
        "|phone numbers?|urls?|links?|people|places?|cities|city|companies)", "find (?:all |every )?(?:the )?"
        "(?:emails?|dates?|names?|phone numbers?)")),
    ("classification", _words(
        "classify", "categori[sz]e", "sentiment", "spam or not", "one[- ]word answer", "yes or no",
        "positive or negative", "(?:happy|angry|annoyed|sad|neutral|urgent|sarcastic) or (?:not|\\w+)\\??$",
        "is this (?:review |message |email |text )?(?:positive|negative|spam)", "label (?:this|the|each)",
        "which category", "what language is", "detect the language", "tag (?:this|each)")),
    ("formatting", _words(
        "(?:convert|turn|format|put|make) (?:this|these|it|them|the following)?\\s*(?:list |table |data |text "
        "|dates? )?(?:in)?to (?:a |an )?(?:\\w+ )?(?:json|csv|yaml|xml|table|list|bullets?|markdown|title case|iso)",
        "format (?:this|these|the following)", "pretty[- ]?print", "prettify", "minify", "indent (?:this|it)",
        "sort (?:this|these|the following)", "alphabeti[sz]e", "as (?:a )?(?:json|csv|yaml|table|bulleted list)")),
    ("a simple assistant action", r"^\W*(?:remind me|set (?:a|an|my) (?:timer|alarm|reminder)|what(?:'s| is) the "
                                  r"(?:weather|time|date)|turn (?:on|off) |play |add .{1,40} to (?:my )?(?:list"
                                  r"|calendar|cart))"),
    ("conversion", r"^\W*(?:please )?convert\b"),
    ("unit conversion or one sum", r"^\W*(?:what(?:'?s| is)\s+)?(?:convert\s+)?(?:an?\s+)?\$?[\d.,]+\s*%?\s*"
                                   r"(?:\w+\s+)?(?:[-+*/x×]\s*\$?[\d.,]+|(?:of|on) (?:an?\s+)?\$?[\d.,]+(?:\s*\w+)?"
                                   r"|\w{1,12} (?:in|to) \w{1,12})\s*\??$"
                                   r"|^\W*how many \w{1,12} (?:is|are|in) [\d.,]+\s*\w{0,12}\s*\??$"),
    ("a word's meaning", r"^\W*(?:define|definition of|what does .{1,40} (?:mean|stand for)|what is the (?:meaning"
                         r"|plural|past tense|opposite) of (?:the )?(?:word|term|phrase|acronym|abbreviation|['\"])"
                         r"|synonyms? (?:of|for)|antonyms? (?:of|for)"
                         r"|how do you spell|spell)\b"),
))
# How long each quick task may be (characters of the whole turn); the tasks that work on a pasted text
# (extraction, classification, formatting, rewording, translation) may carry one.
_LIMITS = {"greeting or thanks": 60, "a word's meaning": 90, "unit conversion or one sum": 60,
           "a simple assistant action": 90, "conversion": 90}
_WITH_TEXT = 1200
# Operations on a pasted text: numbers in it (an invoice, an order email) do not make it a maths problem.
_ON_TEXT = {"extraction", "classification", "formatting", "fixing or rewording a short text", "translation"}


_LOOKUP = re.compile(r"^\W*(?:what|which|who|whom|whose|when|where|whats|how (?:many|much|tall|old|far|big|long))\b"
                     r"[^\n]{0,100}$", re.I)
_LOOKUP_TEXT = 600   # characters: a question on a longer text (a puzzle's clues, a report) is ranked as any other
_SCAN = 400          # characters of a turn searched for what makes it hard
_ASK_LINE = 300      # characters: the longest line looked at as an instruction


def _asks(text: str) -> list[str]:
    """Where the ask may be, when a text to work on comes with it: its first line, its last line (an email
    pasted, then "get the name and the date"), or what comes before a colon on one line ("whats the order
    number: '...'"). Empty when the whole prompt is the ask."""
    lines = [line for line in text.splitlines() if line.strip()]
    # A line that asks for a quick task is short: a longer one is no instruction to look at (and bounds the work).
    asks = [line for line in (lines[0], lines[-1]) if len(line) <= _ASK_LINE] if len(lines) > 1 else []
    head, colon, rest = text.partition(":")
    if colon and len(rest.strip()) >= 8 and len(head) <= 100 and "\n" not in head:
        asks.append(head)
    return asks


def _hard(parts: list[str]) -> tuple[tuple[str, ...], str] | None:
    """Everything in `parts` that asks for more than a quick task, in words (first found first), and the
    words that first said so; or None."""
    found: dict[str, str] = {}
    for part in parts:
        for m in _HARD.finditer(part.lower()):
            if m.lastgroup:
                found.setdefault(_HARD_PARTS[int(m.lastgroup[1:])][0], part[m.start():m.end()].strip()[:30])
        if "```" in part:
            found.setdefault(_HARD_PARTS[_CODE_ASK][0], "```")
    if not found:
        return None
    first = next(iter(found))
    return tuple(found), found[first]


def assess(text: str, kind: str | None = None) -> Verdict:
    """Whether the last user turn `text` is a quick task a 350M model can do, and why (in words). Bounded work:
    what is searched for hard markers is at most the first `_SCAN` characters and the lines that ask. `kind`:
    `traffic_kind(text)` where the caller has it already."""
    stripped = text.strip()
    if not stripped:
        return Verdict(True, "quick task: empty message")
    asks = _asks(stripped)
    # A task on a pasted text first (its line that asks), then the whole turn as one ask.
    found: tuple[str | None, str] = next(((why, ask) for ask in asks for why, pattern in _QUICK
                                          if why not in _LIMITS and pattern.search(ask)), (None, stripped))
    if found[0] is None and len(stripped) <= max(_LIMITS.values()):
        found = next(((why, stripped) for why, pattern in _QUICK if pattern.search(stripped)), (None, stripped))
    quick, ask = found
    kind = kind or traffic_kind(stripped)
    if kind == "multiple_choice" or (kind == "maths" and quick not in _ON_TEXT):
        return Verdict(False, f"not a quick task: {_KIND_WORDS[kind]}")
    lookup = None if quick else next((a for a in asks if _LOOKUP.search(a)), None)
    # A task on a pasted text is judged by what asks (its first line, and the line that asked); anything else
    # by all of it (where it is not a quick task anyway, its opening says why).
    on_text = (quick is not None and quick not in _LIMITS) or lookup is not None
    parts = list(dict.fromkeys([stripped.split("\n", 1)[0], ask if quick else (lookup or stripped)])) if on_text \
        else [stripped]
    hard = _hard([p[:_SCAN] for p in parts])
    if hard:
        return Verdict(False, f"not a quick task: {hard[0][0]} ('{hard[1]}')", asks_for=hard[0])
    if quick is None:
        if lookup is not None and len(stripped) <= _LOOKUP_TEXT:
            return Verdict(False, "not a quick task for a small model: a question on the text given", lookup=True)
        return Verdict(False, "not a quick task: none of the quick tasks a small model handles")
    limit = _WITH_TEXT if quick not in _LIMITS else _LIMITS[quick]
    if len(stripped) > limit:
        return Verdict(False, f"not a quick task: {quick}, but {len(stripped)} characters long")
    if quick in _LIMITS and stripped.count("?") > 1:
        return Verdict(False, "not a quick task: several questions")
    return Verdict(True, f"quick task: {quick}")
