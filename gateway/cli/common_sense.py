"""`smr eval --common-sense [FILE ...]`: the configured pipeline, as the gateway decides, on prompts labelled
with the band a reasonable user expects (`not simple`, `not complex` or `any`; tests/data/common_sense.jsonl),
and a table of how many of each band were misrouted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from router_core.types import Conversation, Turn

SUITES = (Path(__file__).resolve().parents[2] / "tests" / "data" / "common_sense.jsonl",)
MISROUTED = {"not simple": "simple", "not complex": "complex"}


class Case(msgspec.Struct, frozen=True):
    id: str
    kind: str
    band: str
    messages: list[dict[str, Any]]
    why: str = ""
    tools: list[Any] = []


class Routed(msgspec.Struct, frozen=True):
    case: Case
    tier: str
    reasons: tuple[str, ...]

    def conversation_text(self) -> str:
        return _text(self.case.messages[-1].get("content")) if self.case.messages else ""

    @property
    def misrouted(self) -> bool:
        return MISROUTED.get(self.case.band) == self.tier


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # content parts: the text ones
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def load_cases(path: Path) -> list[Case]:
    cases = [msgspec.json.decode(line, type=Case) for line in path.read_text().splitlines() if line.strip()]
    bad = [c.id for c in cases if c.band not in ("not simple", "not complex", "any")]
    if bad:
        raise ValueError(f"{path}: unknown band on {', '.join(bad)}")
    return cases


def conversation(case: Case) -> Conversation:
    return Conversation(tuple(Turn(str(m.get("role", "user")), _text(m.get("content"))) for m in case.messages))


def route(cases: Sequence[Case], settings: Any) -> list[Routed]:
    from gateway.cli.scoring import decide_all

    decisions = decide_all([conversation(c) for c in cases], settings)
    return [Routed(c, d.tier, d.reasons) for c, d in zip(cases, decisions, strict=True)]


def table(routed: Sequence[Routed]) -> str:
    lines = ["| band | prompts | simple | medium | complex | misrouted |", "|---|---|---|---|---|---|"]
    for band in ("not simple", "not complex", "any"):
        rs = [r for r in routed if r.case.band == band]
        counts = {t: sum(1 for r in rs if r.tier == t) for t in ("simple", "medium", "complex")}
        wrong = sum(1 for r in rs if r.misrouted)
        lines.append(f"| {band} | {len(rs)} | {counts['simple']} | {counts['medium']} | {counts['complex']} | "
                     f"{wrong if band != 'any' else '(any tier)'} |")
    return "\n".join(lines)


def cmd_common_sense(paths: Sequence[str], settings: Any, verbose: bool) -> int:
    status = 0
    for path in [Path(p) for p in paths] or list(SUITES):
        routed = route(load_cases(path), settings)
        print(f"{path}\n\n{table(routed)}\n")
        for r in routed:
            if r.misrouted or verbose:
                mark = "MISROUTED " if r.misrouted else ""
                print(f"{mark}{r.case.id} ({r.case.band}) -> {r.tier}: {json.dumps(r.conversation_text()[:90])} "
                      f"| {'; '.join(r.reasons)}")
        status |= int(any(r.misrouted for r in routed))
    return status
