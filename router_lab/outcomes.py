"""Many models' outcomes on the same prompts (the repository's `data/`, see data/SOURCES.md), as one
list of `Outcomes`.

Each row: the prompt, its source (the unit a cross-validation fold holds out), the kind of traffic
(`chat` or `bench`), the licence family of its data, and a quality in [0, 1] per model:

    alpaca/<subset>    AlpacaEval 2: the judge's probability the model beats gpt4_1106_preview   CC BY-NC
    arena-hard         Arena-Hard v0.1: win rate against gpt-4-0314                               Apache-2.0
    arena-bench        Arena-Bench v1: GPT-4's grade 1-10, divided by 10                           Apache-2.0
    bench/<name>       9 open models correct or not (LLMRouter: QA, maths, code, logic, ...)       MIT
    mmlu/<group>       Mixtral and GPT-4 correct or not, MMLU subjects in four groups               MIT
    gsm8k              no model outcomes: the worked solution's number of calculation steps        MIT
                       (a difficulty proxy for training; held out, it is scored by rank correlation)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import msgspec

NON_COMMERCIAL = "CC BY-NC 4.0"
# The repository's own copy of the data (compressed); `--data` may name another folder of the same layout.
DATA = Path(__file__).resolve().parents[1] / "data"
# MMLU subjects of the shared data, in the four groups the MMLU paper uses.
MMLU_GROUPS = {
    "stem": ("abstract_algebra", "astronomy", "college_chemistry", "college_mathematics", "college_physics",
             "computer_security", "conceptual_physics", "electrical_engineering", "elementary_mathematics",
             "high_school_biology", "high_school_chemistry", "high_school_computer_science",
             "high_school_mathematics", "high_school_physics", "high_school_statistics", "machine_learning",
             "college_biology", "college_computer_science", "anatomy"),
    "humanities": ("formal_logic", "high_school_european_history", "high_school_us_history",
                   "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                   "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                   "world_religions"),
    "social": ("econometrics", "high_school_geography", "high_school_government_and_politics",
               "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
               "human_sexuality", "professional_psychology", "public_relations", "security_studies",
               "sociology", "us_foreign_policy"),
}
_STEPS = re.compile(r"<<[^>]*>>")


class Outcomes(msgspec.Struct, frozen=True):
    prompt: str
    source: str                  # a cross-validation unit: alpaca/koala, arena-hard, bench/math, mmlu/stem ...
    kind: str                    # chat | bench
    licence: str
    quality: dict[str, float]    # model -> quality in [0, 1] (empty for gsm8k)
    proxy: float | None = None   # gsm8k: calculation steps


def mmlu_group(subject: str) -> str:
    for group, subjects in MMLU_GROUPS.items():
        if subject in subjects:
            return group
    return "other"


def read_text(path: Path) -> str:
    """A data file's text: `path` itself, or `path.gz` beside it (how the repository ships its data)."""
    if path.exists():
        return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    packed = path.with_name(path.name + ".gz")
    if packed.exists():
        return gzip.decompress(packed.read_bytes()).decode()
    raise FileNotFoundError(f"{path} (nor {packed.name}): see data/SOURCES.md")


def _lines(path: Path) -> list[dict[str, Any]]:
    # split("\n"), not splitlines(): prompts may hold U+2028 and other line separators.
    return [json.loads(line) for line in read_text(path).split("\n") if line.strip()]


def load_router_outcomes(folder: Path) -> list[Outcomes]:
    out: list[Outcomes] = []
    for r in _lines(folder / "alpaca_eval_per_prompt.jsonl"):
        ae2 = r["ae2_vs_gpt4_1106_preview"]
        q = {m: float(v) for m, v in ae2["p_win_by_model"].items() if "Null" not in m and v is not None}
        out.append(Outcomes(str(r["prompt"]), "alpaca/" + str(r["source"]).split("/")[-1], "chat", NON_COMMERCIAL, q))
    for r in _lines(folder / "arena_hard_v01_per_prompt.jsonl"):
        q = {m: float(v["win_rate_vs_baseline"]) for m, v in r["by_model"].items()
             if v and v.get("win_rate_vs_baseline") is not None}
        out.append(Outcomes(str(r["prompt"]), "arena-hard", "chat", "Apache-2.0", q))
    for r in _lines(folder / "arena_bench_v1_per_prompt.jsonl"):
        q = {m: float(s) / 10 for m, s in r["score_by_model"].items() if s is not None}
        out.append(Outcomes(str(r["prompt"]), "arena-bench", "chat", "Apache-2.0", q))
    for r in _lines(folder / "llmrouter_dcrouter_per_prompt.jsonl"):
        q = {m: float(v) for m, v in r["correct_by_model"].items() if v is not None}
        out.append(Outcomes(str(r["prompt"]), "bench/" + str(r["source"]).split("/")[-1], "bench", "MIT", q))
    return out


def load_mmlu(folder: Path) -> list[Outcomes]:
    out = []
    for path in sorted([*folder.glob("mmlu_*.csv"), *folder.glob("mmlu_*.csv.gz")]):
        group = "mmlu/" + mmlu_group(path.name.split(".")[0].removeprefix("mmlu_"))
        with io.StringIO(read_text(path)) as f:
            for row in csv.DictReader(f):
                q = {"mixtral-8x7b": float(row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True"),
                     "gpt-4-1106-preview": float(row["gpt-4-1106-preview"] == "True")}
                out.append(Outcomes(row["prompt"], group, "bench", "MIT", q))
    return out


def load_gsm8k(path: Path, limit: int = 1500) -> list[Outcomes]:
    rows = _lines(path)[:limit]
    return [Outcomes(str(r["question"]), "gsm8k", "bench", "MIT", {}, float(len(_STEPS.findall(str(r["answer"])))))
            for r in rows]


def load_all(data: Path = DATA) -> list[Outcomes]:
    """Every source under `data` (the repository's data folder, or one of the same layout)."""
    return (load_router_outcomes(data / "router_outcomes") + load_mmlu(data / "routellm_mmlu_train")
            + load_gsm8k(data / "gsm8k" / "train.jsonl"))


def load_heldout(folder: Path) -> list[Outcomes]:
    """RouteLLM's own evaluation sets (data/heldout: MMLU's 28 subjects absent from the training data, the
    GSM8K test split, MT-Bench's first turns), Mixtral against GPT-4: for evaluation only, never for training
    or for choosing a setting."""
    out = []
    pair = ("mixtral-8x7b", "gpt-4-1106-preview")
    for name, source in (("mmlu_heldout.csv", "heldout/mmlu"), ("gsm8k_test.csv", "heldout/gsm8k")):
        for row in csv.DictReader(io.StringIO(read_text(folder / name))):
            q = dict(zip(pair, (float(row["mixtral_correct"] == "True"), float(row["gpt4_correct"] == "True")),
                         strict=True))
            out.append(Outcomes(row["prompt"], source, "bench", "MIT", q))
    for r in _lines(folder / "mt_bench.jsonl"):
        q = dict(zip(pair, (float(r["mixtral_score"]) / 10, float(r["gpt4_score"]) / 10), strict=True))
        out.append(Outcomes(str(r["turns"][0]), "heldout/mt-bench", "chat", "Apache-2.0", q))
    return out
