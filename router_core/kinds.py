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

KINDS = ("chat", "multiple_choice", "maths", "code")

_OPTIONS = re.compile(r"\n\s*\(?[Aa][.)]\s")
_CODE = re.compile(r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bpython\b|\bjavascript\b|\btypescript\b|\bjava\b"
                   r"|c\+\+|\bsql\b|\bregex\b|\bscript\b|\bcode\b|\bprogram\b|\brust\b|\bgolang\b", re.I)
_MATHS_ASK = re.compile(r"\$[^$]+\$|\d\s*[-+*/^=]\s*\d|\b(calculate|solve|how many|how much|percent|total|equation"
                        r"|probability|sum|average|cost|find|compute|determine|simplify|how (long|far|old|fast)"
                        r"|what (percentage|fraction))\b", re.I)
_NUMBERS = re.compile(r"\d+(?:[.,]\d+)?|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen"
                      r"|twenty|thirty|fifty|hundred|thousand|half|third|quarter|twice|double|dozen)\b", re.I)


def traffic_kind(text: str) -> str:
    """One of KINDS for a prompt's text."""
    if _OPTIONS.search(text):
        return "multiple_choice"
    if _CODE.search(text):
        return "code"
    if _MATHS_ASK.search(text) and len(_NUMBERS.findall(text)) >= 2:
        return "maths"
    return "chat"
