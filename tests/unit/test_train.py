"""`router_lab.train` on a small synthetic set: folds keep groups whole, and the chosen head beats
prompt length where the signal is in the embedding. Without the train extra, `smr train` and `smr eval`
say what to install instead of failing with a traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from router_core.classifiers.embedding import Head
from router_core.features import STRUCTURE_FEATURES
from router_lab.data import Example
from router_lab.train import held_out_sets, train

ROOT = Path(__file__).resolve().parents[2]
# scikit-learn and scipy made unimportable, as on an install without the train extra.
WITHOUT_EXTRA = """
import sys
sys.modules["sklearn"] = None
sys.modules["scipy"] = None
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [["train", "data"], ["train", "--difficulty"], ["eval", "--data", "x.jsonl"],
                                  ["eval", "--leave-source-out"]])
def test_training_commands_without_the_train_extra_say_what_to_install(args: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "SMR_ADMIN_KEY": "smr_admin_" + "x" * 24}
    done = subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "pip install -e '.[train]'" in line and "scikit-learn" in line


def synthetic(n_groups: int = 8, per_group: int = 60) -> tuple[list[Example], np.ndarray]:
    """Needs-the-strong-model is driven by the first embedding dimension; length is noise."""
    rng = np.random.default_rng(7)
    examples, vectors = [], []
    for g in range(n_groups):
        source = "mmlu" if g % 2 else "alpaca"
        for _ in range(per_group):
            v = rng.normal(size=8)
            hard = v[0] + 0.3 * rng.normal() > 0.5
            prompt = "word " * int(rng.integers(3, 60))
            examples.append(Example(prompt, f"{source}:g{g}", cheap_ok=not hard, strong_ok=True))
            vectors.append(v / np.linalg.norm(v))
    return examples, np.array(vectors, dtype=np.float32)


def test_held_out_sets_keep_groups_whole_and_split_by_benchmark() -> None:
    examples, _ = synthetic()
    groups = [e.group for e in examples]
    sets = held_out_sets(groups, 4)
    for repeat in range(3):
        whole = [h for h in sets if h.repeat == repeat and h.part == "all"]
        assert sorted(np.concatenate([h.rows for h in whole]).tolist()) == list(range(len(examples)))
        for h in whole:
            held = {groups[i] for i in h.rows}
            others = {groups[i] for o in whole if o is not h for i in o.rows}
            assert not held & others, "a group is never split across folds"
    assert {h.part for h in sets} == {"all", "mmlu", "alpaca"}


def test_train_learns_the_signal_and_reports_every_set() -> None:
    examples, vectors = synthetic()
    head, table = train(examples, vectors, k=4, log=io.StringIO())
    assert isinstance(head, Head)
    assert len(head.weights) == 8 + len(STRUCTURE_FEATURES)
    assert head.weights[0] > 0, "the informative dimension pushes towards the strong model"
    assert head.cv["apgr"] > head.cv["apgr_length"] + 0.1
    assert head.cv["wins"] == head.cv["held_out_sets"]
    assert table.count("\n| ") >= head.cv["held_out_sets"]
    hard = next(i for i, e in enumerate(examples) if e.needs_strong)
    easy = next(i for i, e in enumerate(examples) if not e.needs_strong)
    assert head.score(vectors[hard], examples[hard].prompt) > head.score(vectors[easy], examples[easy].prompt)


def test_router_variants_bench_tables_every_variant_and_boost() -> None:
    from bench.studies.router_variants import table

    examples, vectors = synthetic()
    lines = [r for r in table(examples, vectors, k=4) if r.startswith("| ") and "---" not in r]
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in lines[1:]]  # past the header
    assert len(rows) == 5 * 4 and len({r[0] for r in rows}) == 5
    shipped = {float(r[1]): r for r in rows if r[0].startswith("shipped")}
    ahead, sets = map(int, shipped[0.0][2].split("/"))
    assert ahead == sets and float(shipped[0.0][3]) > 0.6  # the signal is in the embedding, length is noise
