"""Prompt sets with cheap/strong outcomes, as one shape: prompt, group, cheap_ok, strong_ok.

- RouteLLM's MMLU responses (`mmlu_<subject>.csv`: prompt, Mixtral correct, GPT-4 correct); the
  group is the subject.
- AlpacaEval annotations (`annotations.json`): a judge's preference between the strong (output_1) and
  the cheap (output_2) answer; cheap_ok = preference >= 1.5, strong_ok = True; the group is the
  AlpacaEval sub-dataset.
- JSON lines with `prompt` (or `messages`), `cheap_ok`, `strong_ok` and optional `group`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import msgspec

from router_lab.outcomes import read_text

CHEAP_COLUMN = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COLUMN = "gpt-4-1106-preview"


class Example(msgspec.Struct, frozen=True):
    prompt: str
    group: str
    cheap_ok: bool
    strong_ok: bool

    @property
    def needs_strong(self) -> bool:
        return self.strong_ok and not self.cheap_ok


def load_mmlu_csv(path: Path) -> list[Example]:
    subject = path.name.split(".")[0].removeprefix("mmlu_")
    with io.StringIO(read_text(path), newline="") as f:
        return [Example(r["prompt"], f"mmlu:{subject}", r[CHEAP_COLUMN] == "True", r[STRONG_COLUMN] == "True")
                for r in csv.DictReader(f)]


def load_alpaca_annotations(path: Path) -> list[Example]:
    rows = json.loads(read_text(path))
    return [Example(r["instruction"], f"alpaca:{r.get('dataset', 'all')}", float(r["preference"]) >= 1.5, True)
            for r in rows if r.get("preference") is not None]


def load_jsonl(path: Path) -> list[Example]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        prompt = r.get("prompt") or "\n".join(m.get("content") or "" for m in r.get("messages", []))
        out.append(Example(prompt, r.get("group", path.stem), bool(r["cheap_ok"]), bool(r["strong_ok"])))
    return out


def load(paths: list[Path]) -> list[Example]:
    """Files or folders; a folder is read for mmlu_*.csv and annotations.json below it (either gzipped, as the
    repository's data/ keeps them)."""
    out: list[Example] = []
    for p in paths:
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.name.startswith("mmlu_") and f.name.endswith((".csv", ".csv.gz")):
                out += load_mmlu_csv(f)
            elif f.name in ("annotations.json", "annotations.json.gz"):
                out += load_alpaca_annotations(f)
            elif f.suffix == ".jsonl":
                out += load_jsonl(f)
    return out
