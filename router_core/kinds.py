"""What kind of traffic a prompt is: a multiple-choice question, a maths problem, a code task, or chat.

Pure and fast (a few regular expressions). The default router ranks each kind with the signal that
transfers to prompts it never saw (measured leave-source-out, docs/routing.md): chat by the learned
difficulty head, the other kinds by length within the kind.

    multiple_choice   lettered answer options on their own lines ("\nA. ...", "\n(a) ...")
    code              a code fence, a definition, or a code task ("python", "function", "sql", "regex", ...)
    maths             at least two numbers (digits or number words) and a maths ask (an operator between
                      numbers, LaTeX, "solve", "how many", "what percentage", ...)
    chat              everything else
"""

from __future__ import annotations

import re
from itertools import islice

KINDS = ("chat", "multiple_choice", "maths", "code")

_OPTIONS = re.compile(r"\n[^\S\n]*\(?[Aa][.)]\s")   # [^\S\n]: not \s, which made a run of newlines quadratic
# Matched against the lower-cased text (no re.I: it is slower), one word boundary shared by the words.
_CODE = re.compile(r"```|c\+\+|\b(?:def \w+\(|class \w+|(?:function|python|javascript|typescript|java|sql|regex"
                   r"|script|code|program|rust|golang)\b)")
_MATHS_ASK = re.compile(r"\$[^$]+\$|\d\s*[-+*/^=]\s*\d|\b(?:calculate|solve|how many|how much|percent|total|equation"
                        r"|probability|sum|average|cost|find|compute|determine|simplify|how (?:long|far|old|fast)"
                        r"|what (?:percentage|fraction))\b")
_NUMBERS = re.compile(r"\d+(?:[.,]\d+)?|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen"
                      r"|twenty|thirty|fifty|hundred|thousand|half|third|quarter|twice|double|dozen)\b")


def traffic_kind(text: str) -> str:
    """One of KINDS for a prompt's text."""
    if _OPTIONS.search(text):
        return "multiple_choice"
    low = text.lower()
    if _CODE.search(low):
        return "code"
    if _MATHS_ASK.search(low) and next(islice(_NUMBERS.finditer(low), 1, None), None) is not None:
        return "maths"
    return "chat"
