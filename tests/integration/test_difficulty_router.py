"""The shipped difficulty router (issue 15): it is the configured default and `smr classify` uses the
pipeline; a second turn is scored with its first; its weights come from permissively licensed data, as
its provenance file says; and `smr eval` can evaluate the `llm` classifier against Ollama or any
OpenAI-compatible server."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from router_core.classifiers.difficulty import DifficultyClassifier
from router_core.difficulty import HEAD_PATH, difficulty_logits, load_head
from router_core.static_embed import MAX_CHARS, MAX_TOKENS, StaticEmbedder, Tokens
from router_core.types import Conversation, Turn
from router_lab.outcomes import NON_COMMERCIAL, load_all
from tests.helpers import REASON, smr_in_process
from tests.integration.test_cli import CLEAN_ENV, ROOT

DATA = ROOT / "data"


def smr(*args: str) -> subprocess.CompletedProcess[str]:
    """`smr ARGS` from the repository root, without the variables CLEAN_ENV leaves out."""
    return smr_in_process(args, {k: None for k in os.environ if k not in CLEAN_ENV}, cwd=ROOT)


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
    # The default `tiered` classifier answers all three (nothing declined): "hi" is a quick task for the
    # small model, and says so; "yes, do it" is not, and in context it is scored with the maths task before it.
    assert [r["classifier"] for r in rows] == ["tiered", "tiered", "tiered"] and not any("skipped" in r for r in rows)
    assert rows[0]["tier"] == "simple" and rows[0]["reasons"] == ["quick task: greeting or thanks"]
    assert rows[1]["tier"] != "simple" and rows[2]["tier"] != "simple"
    alone, in_context = rows[1]["score"], rows[2]["score"]
    assert in_context > alone  # the second turn is scored with the first


def test_multi_turn_scoring_counts_the_earlier_turns() -> None:
    c = DifficultyClassifier()
    task = "Prove that the sum of the first n odd numbers is n squared, by induction, with every step."
    follow = "Now do the same for the even numbers, please."
    chat = Conversation((Turn("user", task), Turn("assistant", "Base case ..."), Turn("user", follow)))
    joined = Conversation((Turn("user", f"{task}\n{follow}"),))
    alone = Conversation((Turn("user", follow),))
    assert c.score_now(chat).score == pytest.approx(c.score_now(joined).score, abs=1e-12) != c.score_now(alone).score
    assert c.score_batch([alone, chat]) == pytest.approx([c.score_now(alone).score, c.score_now(chat).score], abs=1e-12)
    logits = difficulty_logits(c.head, c.design([alone, chat]))  # the rows a refit on ratings uses
    assert 1 / (1 + np.exp(-logits)) == pytest.approx([c.score_now(alone).score, c.score_now(chat).score], abs=1e-9)
    score, reasons = c.score_with_reasons(chat)
    assert (score, reasons) == (c.score_now(chat).score, c.score_now(chat).reasons) and reasons


def test_the_reasons_say_in_words_what_moved_the_score() -> None:
    c = DifficultyClassifier()
    code = Conversation((Turn("user", "Explain Python decorators with an example of caching a function's results"),))
    quiz = Conversation((Turn("user", "Which of these is a mammal?\nA) shark\nB) dolphin\nC) trout\nD) eel"),))
    (_, said), (_, quizzed) = c.score_with_reasons(code), c.score_with_reasons(quiz)
    assert all(REASON.fullmatch(r) for r in (*said, *quizzed)), (said, quizzed)
    # No internal feature names: a chat prompt has no answer options, and that is how it reads.
    assert not any(name in r for r in (*said, *quizzed) for name in c.head.feature_names)
    assert any(r.startswith("task code: yes (+") for r in said)
    # Answer options say which dataset a prompt came from, not how hard it is: they decide nothing, with
    # them or without them (the head learned "no options, so easy" before they were held at zero).
    assert not any(r.startswith(("answer options", "question:", "Roman-numeral")) for r in (*said, *quizzed))


@pytest.mark.parametrize("text", ["hi", "go on", "thanks!", "What is 2+2?"])
def test_the_head_declines_what_is_shorter_than_anything_it_was_trained_on(text: str) -> None:
    import asyncio

    from router_core.classifiers.base import Abstain
    from router_core.classifiers.heuristic import HeuristicClassifier
    from router_core.pipeline import ClassifierPipeline

    c = DifficultyClassifier()
    conv = Conversation((Turn("user", text),))
    assert len(text) < c.shortest
    with pytest.raises(Abstain):
        c.score_now(conv)
    with pytest.raises(Abstain):
        asyncio.run(c.score(conv))
    decision = asyncio.run(ClassifierPipeline([c, HeuristicClassifier()], (0.35, 0.62)).decide(conv))
    assert decision.classifier == "heuristic" and decision.tier == "simple"
    assert decision.skipped and "declined" in decision.skipped[0]


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


@pytest.fixture(scope="module")
def shared_tokens() -> tuple[list[str], StaticEmbedder, Tokens]:
    """Every shared prompt, a static embedder, and the prompts through its `tokenize` (made once: the
    tokenizing is most of both tests below)."""
    e = StaticEmbedder()
    texts = [r.prompt for r in load_all(DATA)]
    return texts, e, e.tokenize(texts)


def split(tokens: Tokens) -> list[list[int]]:
    """Each text's ids back out of a batch's."""
    ids, starts = tokens.ids.tolist(), tokens.starts.tolist()
    return [ids[a:b] for a, b in itertools.pairwise(starts)]


def test_the_tokenizer_shortcut_gives_the_tokenizers_ids_on_every_shared_prompt(
        shared_tokens: tuple[list[str], StaticEmbedder, Tokens]) -> None:
    texts, e, tokens = shared_tokens
    reference = [enc.ids[:MAX_TOKENS] for enc in e.tokenizer.encode_batch([t[:MAX_CHARS] for t in texts],
                                                                         add_special_tokens=False)]
    # `tokenize` is `token_ids` laid end to end: each text's ids, read back, are the tokenizer's.
    assert len(tokens.starts) == len(texts) + 1 and split(tokens) == reference


def test_one_text_and_a_batch_give_the_same_features_and_embedding_on_every_shared_prompt(
        shared_tokens: tuple[list[str], StaticEmbedder, Tokens]) -> None:
    from router_core.token_features import TokenFeatures

    texts, e, tokens = shared_tokens
    f = TokenFeatures(e.tokenizer)
    ids = split(tokens)  # the tokenizer's own ids (the test above)
    assert np.array_equal(np.array([f.one(t, i) for t, i in zip(texts, ids, strict=True)]), f.compute(texts, tokens))
    assert np.allclose(np.array([e.pool_one(i) for i in ids]), e.pool(tokens), atol=1e-6)
