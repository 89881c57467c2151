"""The shipped difficulty router (issue 15): it is the configured default and `smr classify` uses the
pipeline; a second turn is scored with its first; its weights come from permissively licensed data, as
its provenance file says; and `smr eval` can evaluate the `llm` classifier against Ollama or any
OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from router_core.classifiers.difficulty import DifficultyClassifier
from router_core.difficulty import HEAD_PATH, load_head
from router_core.outcomes import NON_COMMERCIAL, load_all
from router_core.types import Conversation, Turn
from tests.integration.test_cli import CLEAN_ENV, ROOT

DATA = ROOT.parent / "shared" / "data"


def smr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=CLEAN_ENV, capture_output=True,
                          text=True, timeout=600)


def test_classify_without_a_classifier_runs_the_configured_pipeline(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    task = "A train leaves at 3 pm going 60 mph and another at 4 pm going 80 mph. When does the second catch up?"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "hi"},
        {"messages": [{"role": "user", "content": "yes, do it"}]},
        {"messages": [{"role": "user", "content": task}, {"role": "assistant", "content": "Let me see."},
                      {"role": "user", "content": "yes, do it"}]}]) + "\n")
    out = smr("classify", "--config", str(ROOT / "config.toml"), "--input", str(src))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["classifier"] for r in rows] == ["difficulty"] * 3
    alone, in_context = rows[1]["score"], rows[2]["score"]
    assert in_context > alone  # the second turn is scored with the first


def test_multi_turn_scoring_counts_the_earlier_turns() -> None:
    c = DifficultyClassifier()
    task = "Prove that the sum of the first n odd numbers is n squared, by induction, with every step."
    follow = Conversation((Turn("user", "go on"),))
    chat = Conversation((Turn("user", task), Turn("assistant", "Base case ..."), Turn("user", "go on")))
    assert c.score_now(chat) > c.score_now(follow)
    assert c.score_batch([follow, chat]) == pytest.approx([c.score_now(follow), c.score_now(chat)], abs=1e-12)
    score, reasons = c.score_with_reasons(chat)
    assert score == c.score_now(chat) and reasons


def test_the_shipped_head_is_trained_on_permissive_data_and_says_so() -> None:
    head = load_head()
    rows = load_all(DATA)
    non_commercial = {r.source for r in rows if r.licence == NON_COMMERCIAL}
    assert non_commercial and not non_commercial & set(head.trained_on)
    assert set(head.licences) <= {"MIT", "Apache-2.0"}
    provenance = HEAD_PATH.with_suffix(".md").read_text()
    assert "smr train --difficulty" in provenance and "CC BY-NC" in provenance
    for source in head.trained_on:
        assert source in provenance
    assert head.cv["apgr_chat"] > head.cv["apgr_length_chat"] and head.cv["apgr_bench"] > head.cv["apgr_length_bench"]
    # The logistic map puts the configured cut-offs (0.35, 0.62) at 50 % and 80 % of the training prompts.
    sample = [r for r in rows if r.source in head.trained_on][::7]
    scores = np.array(DifficultyClassifier(head).score_batch([Conversation((Turn("user", r.prompt),))
                                                              for r in sample]))
    assert abs(np.mean(scores < 0.35) - 0.5) < 0.05 and abs(np.mean(scores < 0.62) - 0.8) < 0.05


def test_eval_runs_the_llm_classifier_against_ollama_or_an_openai_compatible_server(fakes: ThreadedFakes) -> None:
    fakes.ollama.behaviour = Behaviour(reply="COMPLEX")
    fakes.openai.behaviour = Behaviour(reply="SIMPLE")
    for url, model in ((fakes.ollama_url, "granite4:350m"), (fakes.openai_url, "gpt-4o-mini")):
        out = smr("eval", "--leave-source-out", "--data", str(DATA), "--classifier", "llm", "--llm-base-url", url,
                  "--llm-model", model, "--per-source", "3")
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"llm at {url} ({model})" in out.stdout and "| arena-hard | chat | 3 |" in out.stdout
    assert fakes.ollama.stats.requests >= 60 and fakes.openai.stats.requests >= 60
    assert fakes.openai.stats.last_path.endswith("/v1/chat/completions")
