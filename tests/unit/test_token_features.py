"""The static embedding's tokenizer shortcut and the difficulty model's token features: the ids are the
tokenizer's own, whatever the text; each feature means what its name says; a batch scores each text
exactly as it would be scored alone."""

from __future__ import annotations

import numpy as np
import pytest

from router_core import static_embed
from router_core.static_embed import MAX_TOKENS, StaticEmbedder
from router_core.token_features import FEATURES, TokenFeatures, describe

TEXTS = [
    "Solve 2 + 2 = ? in Python, step by step.",
    "Hello, how are you?",
    "",
    "Crème brûlée: 日本語のテキスト, naïve café — and “quotes”.",
    "tab\tand\r\nnew lines\x0band a vertical tab \x00 nul",
    "x" * 150 + " a very long word",
    "word " * 700,
    "Which of these is NOT true?\nA. I and II only\nB. III only\nC. IV\nD. none",
    "Write a poem about codes and classes; summarize the article from the text below.",
    "   \n\t ",
]


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


def reference(e: StaticEmbedder, text: str) -> list[int]:
    return e.tokenizer.encode(text[: static_embed.MAX_CHARS], add_special_tokens=False).ids[:MAX_TOKENS]


def test_ids_are_the_tokenizers_own(embedder: StaticEmbedder) -> None:
    assert embedder.token_ids(TEXTS) == [reference(embedder, t) for t in TEXTS]
    assert len(embedder.token_ids(["word " * 700])[0]) == MAX_TOKENS
    assert embedder.token_ids(TEXTS) == [reference(embedder, t) for t in TEXTS]  # again, from the cache


def test_the_chunk_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_embed, "CACHE_WORDS", 50)
    e = StaticEmbedder()
    words = [f"w{i}x{i * 7}" for i in range(400)]
    for i in range(0, 400, 20):
        text = " ".join(words[i:i + 20])
        assert e.token_ids([text]) == [reference(e, text)]
        assert len(e._chunks) <= 50 + 20
    assert all(len(k) <= static_embed.CACHE_WORD_CHARS for k in e._chunks)


def test_a_batch_embeds_each_text_as_alone(embedder: StaticEmbedder) -> None:
    batch = embedder.embed_batch(TEXTS)
    for text, row in zip(TEXTS, batch, strict=True):
        assert np.allclose(embedder.embed(text), row, atol=1e-6)
    assert not batch[2].any() and not batch[-1].any()   # no tokens: zeros
    assert np.linalg.norm(batch[0]) == pytest.approx(1.0, abs=1e-5)


def features(e: StaticEmbedder, texts: list[str], turns: list[int] | None = None) -> list[dict[str, float]]:
    x = TokenFeatures(e.tokenizer).compute(texts, e.tokenize(texts), turns)
    return [dict(zip(FEATURES, row.tolist(), strict=True)) for row in x]


def test_each_feature_means_what_it_says(embedder: StaticEmbedder) -> None:
    f = dict(zip(TEXTS, features(embedder, TEXTS, [1] * len(TEXTS)), strict=True))
    sums = f[TEXTS[0]]
    assert sums["task:maths"] == 1 and sums["task:code"] == 1 and sums["task:reasoning"] == 1
    assert sums["log_digits"] == pytest.approx(np.log1p(2)) and sums["log_math_symbols"] == pytest.approx(np.log1p(2))
    assert sums["has_question_mark"] == 1 and sums["task:chit-chat"] == 0
    assert f[TEXTS[1]]["task:chit-chat"] == 1 and f[TEXTS[1]]["task:maths"] == 0
    mc = f[TEXTS[7]]
    assert mc["log_negations"] == pytest.approx(np.log1p(1)) and mc["log_roman_items"] == pytest.approx(np.log1p(3))
    question = len("Which of these is NOT true?")
    assert mc["log_question_chars"] == pytest.approx(np.log1p(question))
    assert mc["log_options_chars"] == pytest.approx(np.log1p(len(TEXTS[7]) - question))
    writing = f[TEXTS[8]]
    # Whole words only: "codes" and "classes" are not "code" and "class".
    assert writing["task:writing"] == 1 and writing["task:extraction"] == 1 and writing["task:code"] == 0
    empty = f[""]
    assert empty["log_chars"] == 0 and empty["log_chars_per_token"] == 0 and empty["task:maths"] == 0
    # "Crème brûlée: ..." takes the tokenizer's own path (not ASCII); 4 characters a token or so in prose.
    assert 0.5 < f[TEXTS[3]]["log_chars_per_token"] < 2.0 and f[TEXTS[6]]["log_chars_per_token"] == pytest.approx(
        np.log1p(len(TEXTS[6]) / (MAX_TOKENS + 1)))
    assert f[TEXTS[0]]["turns"] == pytest.approx(np.log1p(1))
    assert features(embedder, ["Well, hello there"])[0]["task:chit-chat"] == 0   # a greeting only as the opening
    assert features(embedder, ["hi"], [3])[0]["turns"] == pytest.approx(np.log1p(3))


def test_each_feature_reads_in_words_with_the_prompts_value(embedder: StaticEmbedder) -> None:
    mc = features(embedder, [TEXTS[7]], [2])[0]
    said = {name: describe(name, v) for name, v in mc.items()}
    question = len("Which of these is NOT true?")
    assert said["log_chars"] == f"length: {len(TEXTS[7])} chars"
    assert said["log_question_chars"] == f"question: {question} chars"
    assert said["log_options_chars"] == f"answer options: {len(TEXTS[7]) - question} chars"
    assert said["log_negations"] == "negations (not, except, ...): 1"
    assert said["log_roman_items"] == "Roman-numeral items: 3"
    assert said["has_question_mark"] == "question mark: yes" and said["task:code"] == "task code: no"
    assert said["turns"] == "user turns: 2" and said["log_lines"] == "line breaks: 4"
    chat = features(embedder, [TEXTS[0]])[0]
    assert describe("log_options_chars", chat["log_options_chars"]) == "answer options: none"
    assert describe("task:maths", chat["task:maths"]) == "task maths: yes"
    assert describe("log_chars_per_token", np.log1p(4.25)) == "characters per token: 4.2"


def test_a_batch_gives_each_text_its_features_alone(embedder: StaticEmbedder) -> None:
    tf = TokenFeatures(embedder.tokenizer)
    batch = tf.compute(TEXTS, embedder.tokenize(TEXTS), list(range(1, len(TEXTS) + 1)))
    for i, text in enumerate(TEXTS):
        assert np.array_equal(tf.compute([text], embedder.tokenize([text]), [i + 1])[0], batch[i]), text
    # A phrase never spans two texts of a batch.
    split = tf.compute(["step by", "step"], embedder.tokenize(["step by", "step"]))
    assert not split[:, FEATURES.index("task:reasoning")].any()
