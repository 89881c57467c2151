"""The default pipeline, as the gateway builds it from config.toml, held to what a reasonable user expects:
no clearly hard prompt on the small local model, at most 5 % of clearly trivial prompts on the strongest one.

Two suites, written apart from the router by two separate authors who did not read its code:
tests/data/common_sense.jsonl (the suite the rules were checked against while they were written) and
tests/data/common_sense_holdout.jsonl (first run after the rules were written; its first-run figures are in
docs/routing.md, and some general rules were added after it: it is no longer a pure hold-out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.common_sense import load_cases, route, table
from gateway.vocab.settings import load_settings
from router_core.token_features import FEATURES

ROOT = Path(__file__).resolve().parents[2]
SUITES = [ROOT / "tests" / "data" / "common_sense.jsonl", ROOT / "tests" / "data" / "common_sense_holdout.jsonl"]


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_the_default_pipeline_agrees_with_common_sense(suite: Path) -> None:
    cases = load_cases(suite)
    assert len(cases) >= (150 if suite == SUITES[0] else 120)
    assert len({c.kind for c in cases}) >= 15 and {c.band for c in cases} == {"not simple", "not complex", "any"}
    routed = route(cases, load_settings(str(ROOT / "config.toml"), env={"SMR_ADMIN_KEY": "unused"}))
    print(table(routed))
    hard_on_simple = [r.case.id for r in routed if r.case.band == "not simple" and r.tier == "simple"]
    trivial = [r for r in routed if r.case.band == "not complex"]
    trivial_on_complex = [r.case.id for r in trivial if r.tier == "complex"]
    assert hard_on_simple == []
    assert len(trivial_on_complex) <= 0.05 * len(trivial), trivial_on_complex
    # The reasons agree with the decision: a prompt kept off the small model says why in words, first (after
    # what the conversation rules did, where they did something: a follow-up carries its conversation's score).
    for r in routed:
        first = next(reason for reason in r.reasons if not reason.startswith(("follow-up:", "sticky:")))
        if any(reason.startswith(("follow-up:", "sticky:")) for reason in r.reasons):
            continue   # the tier is the conversation's; its own verdict is still named above
        if r.tier == "simple":
            assert first.startswith("quick task: "), (r.case.id, r.reasons)
        else:
            assert first.startswith("not a quick task"), (r.case.id, r.reasons)
            assert not any(name in reason for reason in r.reasons for name in FEATURES), r.reasons  # no internal names


def test_smr_eval_common_sense_prints_the_table_and_fails_on_a_misroute(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "eval", "--common-sense", "--config",
                          str(ROOT / "config.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| not simple | 76 | 0 |" in out.stdout
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"id": "x-1", "kind": "chat", "band": "not simple", '
                     '"messages": [{"role": "user", "content": "thanks!"}]}\n')
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "eval", "--common-sense", str(wrong), "--config",
                          str(ROOT / "config.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "MISROUTED x-1 (not simple) -> simple" in out.stdout


def test_the_readmes_classify_block_runs_as_printed(tmp_path: Path) -> None:
    import json

    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ cat prompts.jsonl\n", 1)[1].split("```", 1)[0]
    given, printed = block.split("$ smr classify --input prompts.jsonl\n")
    (tmp_path / "prompts.jsonl").write_text(given)
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "classify", "--config", str(ROOT / "config.toml"),
                          "--input", str(tmp_path / "prompts.jsonl")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    rows, shown = ([json.loads(line) for line in text.splitlines() if line] for text in (out.stdout, printed))
    assert len(rows) == len(shown) == len(given.splitlines())
    for row, readme_row in zip(rows, shown, strict=True):
        assert {k: row[k] for k in ("tier", "classifier", "reasons")} == \
            {k: readme_row[k] for k in ("tier", "classifier", "reasons")}
        assert row["score"] == pytest.approx(readme_row["score"], abs=1e-3)
