"""The classifier contract (issue 25): every registered classifier is a declared `Classifier` (score and
reasons, an inline path or an awaited one, a blocking batch, what it needs, aclose) built from typed
options; a bad option is one SettingsError line naming it; the old flat settings still configure the
classifiers they did; and a classifier added by name (`fixed`) routes a request through the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.app import build_pipeline, classifier_context, classifier_options, routing_needs_encoder
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import Settings, parse_settings, validate
from router_core import ClassifierPipeline, Conversation, registry
from router_core.classifiers.base import ENCODER, Classifier, Scored
from router_core.classifiers.ollama_llm import OpenAICompatLLMClassifier
from tests.helpers import GatewayThread, make_settings

CHAT = Conversation.from_prompt("Explain, step by step, how a hash map resizes when it fills up.")


def settings_with(routing: dict[str, object], cache: dict[str, object] | None = None) -> Settings:
    return validate(parse_settings({"routing": routing, "cache": {"enabled": False, **(cache or {})},
                                    "auth": {"enabled": False}}))


class FakeEncoder:
    """Stands in for the shared encoder: classifiers that need one are built, not run."""

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("name", sorted(registry.CLASSIFIERS))
async def test_every_registered_classifier_keeps_the_declared_contract(name: str) -> None:
    entry = registry.CLASSIFIERS[name]
    options = registry.options_for(name)
    assert isinstance(options, entry.options)
    needs = registry.needs(name, options, registry.Context(device="cpu"))
    encoder: Any = FakeEncoder() if needs else None
    clf = registry.build(name, options, registry.Context(device="cpu"), encoder)
    try:
        assert isinstance(clf, Classifier) and clf.name == name and clf.label.startswith(name)
        assert clf.needs == needs and needs <= {ENCODER}, "what it declares is what the registry says"
        now = clf.score_now(CHAT)
        assert now is None or (isinstance(now, Scored) and 0.0 <= now.score <= 1.0)
        if now is not None:
            assert (await clf.score(CHAT)).score == pytest.approx(now.score)
            assert clf.score_batch([CHAT]) == pytest.approx([now.score])
    finally:
        await clf.aclose()


def test_needs_come_from_the_registry_without_building_anything() -> None:
    ctx = registry.Context(device="cpu")
    assert registry.needs("embedding", registry.options_for("embedding"), ctx) == {ENCODER}
    assert registry.needs("difficulty", registry.options_for("difficulty", {"embedding": "minilm"}), ctx) == {ENCODER}
    assert registry.needs("difficulty", registry.options_for("difficulty"), ctx) == frozenset()  # auto on a CPU
    on_gpu = registry.Context(device="cuda")
    assert registry.needs("difficulty", registry.options_for("difficulty"), on_gpu) == {ENCODER}
    assert not routing_needs_encoder(settings_with({}))
    assert routing_needs_encoder(settings_with({"classifiers": ["difficulty", "heuristic"],
                                                "classifier_options": {"difficulty": {"embedding": "minilm"}}}))


@pytest.mark.parametrize(("routing", "named"), [
    ({"classifiers": ["fixed"], "classifier_options": {"fixed": {"score": 1.5}}},
     "routing.classifier_options.fixed.score"),
    ({"classifier_options": {"fixed": {"scor": 0.5}}}, "routing.classifier_options.fixed.scor"),
    ({"classifier_options": {"llm": {"timeout_s": "slow"}}}, "routing.classifier_options.llm.timeout_s"),
    ({"classifier_options": {"nosuch": {}}}, "routing.classifier_options.nosuch"),
    ({"classifiers": ["nosuch"]}, "routing.classifiers"),
])
def test_a_bad_option_is_one_settings_error_line_naming_it(routing: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_with(routing)
    message = str(caught.value)
    assert f"setting '{named}'" in message and "\n" not in message, message


def test_a_head_file_that_is_not_there_names_the_spelling_it_was_given_in() -> None:
    given = settings_with({"classifiers": ["difficulty"],
                           "classifier_options": {"difficulty": {"embedding": "static", "head": "/nonexistent.json"}}})
    with pytest.raises(SettingsError, match=r"routing\.classifier_options\.difficulty\.head"):
        build_pipeline(given, None)
    old = settings_with({"classifiers": ["difficulty"], "difficulty_embedding": "static",
                         "difficulty_head": "/nonexistent.json"})
    with pytest.raises(SettingsError, match=r"setting 'routing\.difficulty_head'"):
        build_pipeline(old, None)


def test_the_old_flat_settings_are_the_old_spelling_of_the_typed_options() -> None:
    old = settings_with({"classifiers": ["llm", "difficulty", "heuristic"], "llm_model": "tiny:1b",
                         "llm_base_url": "http://127.0.0.1:9/v1", "llm_timeout_s": 0.7,
                         "difficulty_embedding": "static"})
    options = classifier_options(old)
    assert options["llm"] == registry.LLMOptions("http://127.0.0.1:9/v1", "tiny:1b", 0.7)
    assert options["difficulty"] == registry.DifficultyOptions("static")
    # The new spelling wins where both are given.
    both = settings_with({"classifiers": ["llm"], "llm_model": "tiny:1b",
                          "classifier_options": {"llm": {"model": "granite4:350m"}}})
    assert classifier_options(both)["llm"].model == "granite4:350m"
    pipeline = build_pipeline(old, None)
    try:
        llm = pipeline.classifiers[0]
        assert isinstance(llm, OpenAICompatLLMClassifier) and llm.model == "tiny:1b"
        assert llm.scores["SIMPLE"] == classifier_context(old).cutoffs[0] / 2
    finally:
        asyncio.run(pipeline.aclose())


async def test_the_pipeline_refuses_what_is_not_a_classifier_and_reports_what_scored() -> None:
    class Plain:
        name = "plain"

    with pytest.raises(TypeError, match="Plain is not a router_core Classifier"):
        ClassifierPipeline([Plain()], (0.35, 0.62))  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must override score_now or score"):
        type("Nothing", (Classifier,), {"name": "nothing"})
    fixed = registry.build("fixed", registry.FixedOptions(0.9))
    d = await ClassifierPipeline([fixed], (0.35, 0.62)).decide(CHAT)
    assert (d.classifier, d.tier, d.score) == ("fixed", "complex", 0.9) and "fixed score 0.9" in d.reasons[0]


@pytest.fixture
def gateway(fakes: ThreadedFakes) -> Iterator[GatewayThread]:
    settings = make_settings(fakes, routing={"classifiers": ["fixed"],
                                             "classifier_options": {"fixed": {"score": 0.1}}})
    with GatewayThread(settings) as g:
        yield g


def test_a_classifier_configured_by_name_routes_a_request_through_the_gateway(gateway: GatewayThread) -> None:
    hard = "Design a globally distributed payment system and prove its consistency guarantees."
    r = httpx.post(gateway.url + "/v1/chat/completions", timeout=10,
                   json={"model": "auto", "messages": [{"role": "user", "content": hard}]})
    assert r.status_code == 200, r.text
    assert (r.headers["x-smr-classifier"], r.headers["x-smr-tier"], r.headers["x-smr-model"]) == (
        "fixed", "simple", "local")
    dry = httpx.post(gateway.url + "/v1/route", timeout=10,
                     json={"model": "auto", "messages": [{"role": "user", "content": hard}]}).json()
    explained = dry["smr"]
    assert (explained["classifier"], explained["tier"], explained["score"]) == ("fixed", "simple", 0.1), dry
    assert explained["reasons"] == ["fixed score 0.1 (routing.classifier_options.fixed.score)"]
    health = httpx.get(gateway.url + "/health", timeout=10).json()
    assert health["classifiers"] == ["fixed"], health
