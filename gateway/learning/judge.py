"""Judging a served answer against the reference tier's answer to the same request.

`rule_verdict` (pure) decides where the request makes it checkable: an answer that is empty, refused, not
the JSON asked for (or not fitting its `json_schema`), or a tool call that does not fit its schema, loses
to a reference answer that is none of those; where the request asks for a number, the served answer is
as good when its final number is the reference's, and worse when it differs. Elsewhere it says nothing.

`ModelJudge` asks a configured backend, with the pairwise prompt in judge_pairwise.md. The served answer
is answer A for half of the requests and B for the other half (by request id), so a judge's taste for
the first or second position does not lean the verdicts one way.

Verdicts: "served" (the served answer is better), "reference", "tie".
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import msgspec

from gateway.path.cascade import fails
from gateway.path.fallback import Answered, ChainCaller
from gateway.providers.base import UpstreamCall
from gateway.vocab.prompt_log import logged_prompt
from gateway.vocab.settings import Backend
from gateway.vocab.wire import ChatCompletionRequest, ResponseMessage

Verdict = Literal["served", "reference", "tie"]
PROMPT = (Path(__file__).parent / "judge_pairwise.md").read_text()
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")
# A request that asks for a number: arithmetic, or one of these words (a digit alone is not enough: "In
# 1066, who ...?" asks for a name).
_ASKS_NUMBER = re.compile(r"\d\s*[-+*/^=]\s*\d|\b(how many|calculate|compute|solve|what is the (sum|product|value))\b",
                          re.IGNORECASE)
_VERDICT = re.compile(r"\[\[([ABC])\]\]")
_ANSWER_CHARS = 8_000


def final_number(text: str) -> str | None:
    found = _NUMBER.findall(text or "")
    return found[-1].replace(",", "") if found else None


def rule_verdict(req: ChatCompletionRequest, served: ResponseMessage, reference: ResponseMessage,
                 served_backend: Backend, reference_backend: Backend) -> tuple[Verdict, str] | None:
    """(verdict, the rule that decided), or None when no rule applies to this request."""
    served_fails = fails(req, served, "stop", served_backend)
    reference_fails = fails(req, reference, "stop", reference_backend)
    if served_fails or reference_fails:
        if served_fails and not reference_fails:
            return "reference", "rule:" + served_fails.split(":")[0]
        if reference_fails and not served_fails:
            return "served", "rule:" + reference_fails.split(":")[0]
        return "tie", "rule:both-fail"
    checkable = (req.response_format or {}).get("type") in ("json_object", "json_schema") or bool(served.tool_calls)
    if checkable:
        return "tie", "rule:json" if not served.tool_calls else "rule:tool_schema"
    want = final_number(reference.content or "")
    if want is not None and _ASKS_NUMBER.search(logged_prompt(req)):
        return ("tie" if final_number(served.content or "") == want else "reference"), "rule:number"
    return None


def served_first(request_id: str) -> bool:
    return hashlib.sha256(request_id.encode()).digest()[0] % 2 == 0


def judge_request(question: str, a: str, b: str) -> tuple[ChatCompletionRequest, dict[str, object]]:
    text = PROMPT.format(question=question[:_ANSWER_CHARS], answer_a=a[:_ANSWER_CHARS], answer_b=b[:_ANSWER_CHARS])
    raw: dict[str, object] = {"messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 256}
    return msgspec.convert(raw, ChatCompletionRequest), raw


def parse_verdict(text: str, served_is_a: bool) -> Verdict | None:
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    letter = found[-1]
    if letter == "C":
        return "tie"
    return "served" if (letter == "A") == served_is_a else "reference"


class ModelJudge:
    """A backend asked to compare the two answers (judge_pairwise.md)."""

    def __init__(self, backend: Backend, caller: ChainCaller) -> None:
        self.backend = backend
        self.caller = caller
        self.name = "model:" + backend.name

    async def judge(self, request_id: str, req: ChatCompletionRequest, served: ResponseMessage,
                    reference: ResponseMessage) -> tuple[Verdict | None, Answered]:
        first = served_first(request_id)
        a, b = (served, reference) if first else (reference, served)
        jreq, raw = judge_request(logged_prompt(req), a.content or "", b.content or "")
        answered = await self.caller.complete(UpstreamCall(jreq, raw), (self.backend,))
        return parse_verdict(answered.completion.message.content or "", first), answered
