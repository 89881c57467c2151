"""The difficulty router's transformer path (issue 15): MiniLM's own sentence embedding with a head trained
on it, selectable everywhere and the default where the encoder runs on a GPU. Scored through the real
encoder (ONNX on this CPU machine), in the gateway and offline, agreeing between the one-at-a-time and
the batch paths, reusing the semantic cache's embedding of the same text, and declining what is too
short as the static path does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import msgspec
import numpy as np
import pytest

from gateway.app import build_embedder, build_pipeline, difficulty_reads, routing_needs_encoder
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import parse_settings, validate
from router_core.classifiers.difficulty import DifficultyClassifier, EncoderDifficultyClassifier
from router_core.classifiers.heuristic import HeuristicClassifier
from router_core.classifiers.tiered import TieredClassifier
from router_core.difficulty import HEAD_PATHS, difficulty_logits, load_head
from router_core.embedder import Embedder
from router_core.pipeline import ClassifierPipeline
from router_core.registry import difficulty_embedding
from router_core.types import Conversation, Turn
from router_lab.outcomes import NON_COMMERCIAL, load_all
from tests.helpers import REASON, GatewayThread, make_settings
from tests.integration.test_difficulty_router import DATA

TASK = "Prove that the sum of the first n odd numbers is n squared, by induction, with every step."
FOLLOW = "Now do the same for the even numbers, please."


@pytest.fixture(scope="module")
def encoder() -> Iterator[Embedder]:
    e = Embedder().load()
    yield e
    asyncio.run(e.aclose())


def settings_with(routing: dict[str, object], cache: dict[str, object] | None = None) -> object:
    return validate(parse_settings({"routing": routing, "cache": {"enabled": False, **(cache or {})},
                                    "auth": {"enabled": False}}))


def test_auto_reads_minilm_where_the_encoder_is_on_a_gpu_and_the_static_embedding_elsewhere() -> None:
    assert difficulty_embedding("auto", "cuda") == difficulty_embedding("auto", "cuda:1") == "minilm"
    assert difficulty_embedding("auto", "cpu") == "static"
    assert difficulty_embedding("static", "cuda") == "static" and difficulty_embedding("minilm", "cpu") == "minilm"
    # On this machine (no GPU) the default configuration stays on the static path and loads no encoder.
    default = settings_with({})
    assert default.routing.difficulty_embedding == "auto"  # type: ignore[attr-defined]
    assert difficulty_reads(default) == "static" and not routing_needs_encoder(default)
    assert build_embedder(default) is None
    first = build_pipeline(default, None).classifiers[0]   # the default `tiered` ranks on the static path
    assert isinstance(first, TieredClassifier) and isinstance(first.ranker, DifficultyClassifier)
    # The `difficulty` classifier with an encoder configured on a GPU: auto picks the transformer path, and the
    # encoder is built for it even with the semantic cache off.
    on_gpu = settings_with({"classifiers": ["difficulty", "heuristic"]}, {"device": "cuda"})
    assert difficulty_reads(on_gpu) == "minilm" and routing_needs_encoder(on_gpu)
    assert build_embedder(on_gpu) is not None
    # Asked for explicitly, it is honoured on any device; a value it does not know is refused.
    assert difficulty_reads(settings_with({"difficulty_embedding": "static"}, {"device": "cuda"})) == "static"
    with pytest.raises(Exception, match="difficulty_embedding"):
        settings_with({"difficulty_embedding": "bert"})


def test_a_head_for_the_other_embedding_is_refused_at_start_up_naming_the_setting() -> None:
    from gateway.vocab.errors import SettingsError

    minilm_head = str(HEAD_PATHS["minilm"])
    with pytest.raises(SettingsError, match=r"routing\.difficulty_head.*trained on the minilm embedding"):
        build_pipeline(settings_with({"difficulty_embedding": "static", "difficulty_head": minilm_head}), None)
    with pytest.raises(SettingsError, match=r"routing\.difficulty_head"):
        build_pipeline(settings_with({"difficulty_head": "/nonexistent/head.json"}), None)
    chosen = build_pipeline(settings_with({"difficulty_head": str(HEAD_PATHS["static"])}), None).classifiers[0]
    assert isinstance(chosen, TieredClassifier) and chosen.ranker.head == load_head()


def test_the_shipped_minilm_head_is_trained_on_permissive_data_and_ahead_of_length() -> None:
    head = load_head(HEAD_PATHS["minilm"])
    assert head.embedding == "minilm" and len(head.weights) == 384 + len(head.feature_names)
    rows = load_all(DATA)
    assert not {r.source for r in rows if r.licence == NON_COMMERCIAL} & set(head.trained_on)
    assert set(head.licences) <= {"MIT", "Apache-2.0"}
    provenance = HEAD_PATHS["minilm"].with_suffix(".md").read_text()
    assert "smr train --difficulty data --embedding minilm --write" in provenance
    assert head.cv["apgr_chat"] > head.cv["apgr_length_chat"] and head.cv["apgr_bench"] > head.cv["apgr_length_bench"]
    with pytest.raises(ValueError, match="EncoderDifficultyClassifier"):
        DifficultyClassifier(head)


def test_the_encoder_answers_on_each_event_loop_it_is_used_from(encoder: Embedder) -> None:
    # Its micro-batcher was bound to the first loop: a second asyncio.run (offline tools, tests) waited forever.
    for _ in range(2):
        vector = asyncio.run(asyncio.wait_for(encoder.embed(TASK), 20))
        assert vector.shape == (384,)


def test_the_transformer_path_scores_one_at_a_time_as_in_a_batch_and_declines_short_text(encoder: Embedder) -> None:
    c = EncoderDifficultyClassifier(encoder)
    chat = Conversation((Turn("user", TASK), Turn("assistant", "Base case ..."), Turn("user", FOLLOW)))
    alone = Conversation((Turn("user", FOLLOW),))
    maths = Conversation((Turn("user", "Compute the eigenvalues of [[2, 1], [1, 2]] and explain each step."),))

    async def run() -> tuple[list[float], tuple[str, ...], object]:
        scores = [(await c.score(x)).score for x in (alone, chat, maths)]
        reasons = (await c.score(chat)).reasons
        pipeline = ClassifierPipeline([c, HeuristicClassifier()], (0.35, 0.62))
        return scores, reasons, await pipeline.decide(Conversation((Turn("user", "hi"),)))

    scores, reasons, short = asyncio.run(run())
    assert c.score_batch([alone, chat, maths]) == pytest.approx(scores, abs=1e-5)
    # The rows `smr train --from-logs` refits the head on give the same scores.
    assert 1 / (1 + np.exp(-difficulty_logits(c.head, c.design([alone, chat, maths])))) == pytest.approx(scores,
                                                                                                         abs=1e-5)
    assert all(0.0 < s < 1.0 for s in scores) and scores[0] != scores[1]  # the second turn is scored with its first
    assert reasons and all(REASON.fullmatch(r) for r in reasons), reasons   # in words, as on the static path
    assert short.classifier == "heuristic" and "declined" in short.skipped[0]  # type: ignore[attr-defined]


def test_the_semantic_caches_embedding_of_the_same_text_is_reused_not_computed_again(encoder: Embedder) -> None:
    c = EncoderDifficultyClassifier(encoder)
    text = f"{TASK}\n{FOLLOW}"
    vector = encoder.encode_batch([text])[0]
    plain = Conversation((Turn("user", TASK), Turn("user", FOLLOW)))
    given = msgspec.structs.replace(plain, embedding=vector, embedded_text=text)
    other = msgspec.structs.replace(plain, embedding=-vector, embedded_text=text)
    stale = msgspec.structs.replace(plain, embedding=-vector, embedded_text="another text")

    async def run() -> tuple[list[float], int]:
        before = encoder.embedded
        reused = [(await c.score(given)).score, (await c.score(other)).score]
        return [*reused, (await c.score(plain)).score, (await c.score(stale)).score], encoder.embedded - before

    (from_cache, flipped, computed, not_reused), encoded = asyncio.run(run())
    assert encoded == 2  # only `plain` and `stale` reached the encoder
    assert from_cache == pytest.approx(computed, abs=1e-5) == pytest.approx(not_reused, abs=1e-5)
    assert flipped != pytest.approx(computed, abs=1e-3)  # the given vector is what was scored


def test_the_gateway_routes_with_the_transformer_path_when_configured(fakes: ThreadedFakes,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(fakes, routing={"classifiers": ["difficulty", "heuristic"],
                                             "difficulty_embedding": "minilm"})
    with caplog.at_level(logging.INFO, logger="gateway"), GatewayThread(settings) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                       json={"model": "auto", "messages": [{"role": "user", "content": TASK}]})
        assert r.status_code == 200, r.text
        smr = r.json()["smr"]
        assert smr["classifier"] == "difficulty" and smr["reasons"] and 0 < smr["score"] < 1
        assert r.headers["x-smr-classifier"] == "difficulty"
        health = httpx.get(gw.url + "/health").json()
        assert health["classifiers"] == ["difficulty", "heuristic"]
        assert health["classifiers_detail"] == ["difficulty (on the minilm embedding)", "heuristic"]
    assert "routing: classifiers difficulty (on the minilm embedding), heuristic" in caplog.text
    # The score is the transformer path's, not the static one's.
    conv = Conversation((Turn("user", TASK),))
    static = DifficultyClassifier().score_now(conv).score
    assert smr["score"] != pytest.approx(static, abs=1e-3)


def test_smr_classify_decides_with_the_transformer_path_when_configured() -> None:
    from gateway.cli.scoring import decide_all

    settings = settings_with({"classifiers": ["difficulty", "heuristic"], "difficulty_embedding": "minilm"})
    convs = [Conversation((Turn("user", TASK),)), Conversation((Turn("user", "thanks!"),))]
    decisions = decide_all(convs, settings)
    assert [d.classifier for d in decisions] == ["difficulty", "heuristic"] and "declined" in decisions[1].skipped[0]
    assert np.isfinite([d.score for d in decisions]).all()
