"""Classifiers beyond the heuristic: the packaged embedding head, the LLM classifier on (fake) Ollama,
and the offline commands `smr classify`, `smr calibrate`, `smr eval`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes, free_port
from router_core import ClassifierPipeline, Conversation
from router_core.classifiers.base import ClassifierError
from router_core.classifiers.embedding import EmbeddingClassifier, load_head
from router_core.classifiers.heuristic import HeuristicClassifier
from router_core.classifiers.ollama_llm import OllamaLLMClassifier, parse
from router_core.embedder import Embedder, default_model_path
from router_core.onnx_encoder import export_stem
from tests.helpers import GatewayThread, make_settings

ROOT = Path(__file__).resolve().parents[2]
FIXED = [
    ("Translate 'good morning' into Spanish", 0.5075),
    ("What is the capital of France?", 0.6254),
    ("Prove that there are infinitely many primes of the form 4k+3.", 0.5664),
    ("A 45-year-old man presents with crushing chest pain radiating to the left arm. Which of the following is "
     "the most appropriate next step in management?\nA. Aspirin\nB. Discharge\nC. Antacids\nD. Observation\nAnswer:",
     0.3190),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder().load()


def test_embedding_classifier_loads_offline_with_the_committed_head(embedder: Embedder) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    head = load_head()
    assert len(head.weights) == embedder.dim + len(head.feature_names) == 384 + 9
    # What `smr train` measured for the committed head, held out by subject: ahead of prompt length
    # overall and on each benchmark's held-out prompts.
    for part in ("", "_mmlu", "_alpaca"):
        assert head.cv["apgr" + part] > head.cv["apgr_length" + part], part
    clf = EmbeddingClassifier(embedder, head)
    scores = clf.score_batch([Conversation.from_prompt(p) for p, _ in FIXED])
    for (prompt, known), got in zip(FIXED, scores, strict=True):
        assert got == pytest.approx(known, abs=2e-3), prompt


def test_onnx_and_torch_backends_give_the_same_vectors(embedder: Embedder, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert embedder.backend == "onnx", "CPU default: ONNX Runtime"
    # Where the ONNX file cannot be written, `auto` says why and falls back to torch.
    (tmp_path / "blocked").write_text("a file, not a folder")
    torch_embedder = Embedder(cache_dir=tmp_path / "blocked" / "smr").load()
    assert torch_embedder.backend == "torch"
    assert "ONNX backend unavailable" in caplog.text
    texts = ["Is port 6379 open?", "a", "Summarise the causes of the First World War. " * 40, FIXED[3][0]]
    a, b = embedder.encode_batch(texts), torch_embedder.encode_batch(texts)
    assert a.shape == b.shape == (4, 384)
    assert (a * b).sum(axis=1).min() > 0.9999
    assert abs(float((a * a).sum(axis=1).max()) - 1) < 1e-5, "normalised"
    # Exported once into the cache folder; a second load reuses the file. An export of an earlier
    # version of the model (another fingerprint) is removed; other models' exports stay.
    stem = export_stem(default_model_path())
    stale, other = tmp_path / f"{stem}-0123456789abcdef.onnx", tmp_path / "model-76543210-0123456789abcdef.onnx"
    stale.write_bytes(b"an export of an earlier version of the same folder")
    other.write_bytes(b"another model folder's export")
    fresh = Embedder(backend="onnx", cache_dir=tmp_path).load()
    exported = [p for p in tmp_path.glob("*.onnx") if p != other]
    assert len(exported) == 1 and exported[0].name.startswith(stem) and other.exists()
    mtime = exported[0].stat().st_mtime_ns
    again = Embedder(backend="onnx", cache_dir=tmp_path).load()
    assert exported[0].stat().st_mtime_ns == mtime
    assert abs(fresh.encode_batch(texts) - again.encode_batch(texts)).max() < 1e-6


async def test_concurrent_embeddings_share_forward_passes() -> None:
    embedder = Embedder(window_s=0.002, max_batch=16).load()
    try:
        texts = [f"How do I tune PostgreSQL autovacuum for table number {i}?" for i in range(48)]
        vectors = await asyncio.gather(*(embedder.embed(t) for t in texts))
        assert embedder.embedded == 48
        assert embedder.batches < 48 / 2, f"{embedder.batches} forward passes for 48 concurrent texts"
        alone = embedder.encode_batch(texts)
        assert max(float(np.abs(v - a).max()) for v, a in zip(vectors, alone, strict=True)) < 1e-4, "same vectors"
    finally:
        await embedder.aclose()


def record_passes(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (texts, padded length) of each ONNX forward pass the embedder runs from now on."""
    shapes: list[tuple[int, int]] = []
    run = embedder._onnx._run

    def recording(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        shapes.append(ids.shape)
        return run(ids, mask)

    monkeypatch.setattr(embedder._onnx, "_run", recording)
    return shapes


async def test_a_micro_batch_answers_each_forward_pass_as_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = Embedder(max_batch=64, max_batch_tokens=256).load()
    passes = record_passes(embedder, monkeypatch)
    answered_after: list[int] = []

    async def one(i: int) -> None:
        await embedder.embed(f"{FIXED[3][0]} (variant {i})")
        answered_after.append(len(passes))

    try:
        await asyncio.gather(*(one(i) for i in range(16)))
    finally:
        await embedder.aclose()
    assert embedder.batches == 1 and len(passes) >= 3, (embedder.batches, passes)
    assert min(answered_after) < len(passes), "the first pass's texts were answered before the last pass ended"


async def test_embedding_never_blocks_the_event_loop() -> None:
    embedder = Embedder().load()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        # About half a second of forward passes on this CPU; the loop keeps running meanwhile.
        long = "Explain the trade-offs of sharding a write-heavy PostgreSQL cluster by tenant. " * 12
        await asyncio.gather(*(embedder.embed(f"{long} {i}") for i in range(16)))
    finally:
        done.set()
        await task
        await embedder.aclose()
    assert ticks >= 10, f"the event loop ran only {ticks} times while embedding"


def test_settings_configure_the_encoder() -> None:
    from gateway.app import build_embedder
    from gateway.vocab.settings import CacheSettings, Settings

    settings = Settings(cache=CacheSettings(embedding_batch_window_s=0.01, embedding_max_batch=8,
                                            embedding_backend="torch", embedding_max_batch_tokens=512))
    embedder = build_embedder(settings)
    assert embedder is not None
    assert (embedder.window_s, embedder.max_batch, embedder.requested_backend,
            embedder.max_batch_tokens) == (0.01, 8, "torch", 512)


def test_onnx_forward_passes_stay_within_the_token_budget(embedder: Embedder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Question {i}: " + "why is the sky blue " * (i % 7) for i in range(40)] + [FIXED[3][0] * 3]
    whole = embedder._onnx.encode(texts, max_batch=64, max_tokens=100_000)
    shapes = record_passes(embedder, monkeypatch)
    chunked = embedder._onnx.encode(texts, max_batch=16, max_tokens=128)
    assert np.abs(whole - chunked).max() < 1e-5, "same vectors, in the input order"
    assert sum(n for n, _ in shapes) == len(texts) and len(shapes) > 3
    assert all(n <= 16 and (n * length <= 128 or n == 1) for n, length in shapes), shapes
    assert shapes[0][0] == 1 and shapes[0][1] > 128, "the longest text alone, first"


async def test_embedding_classifier_reuses_a_computed_embedding(embedder: Embedder) -> None:
    clf = EmbeddingClassifier(embedder)
    text = FIXED[2][0]
    vector = embedder.encode_batch([text])[0]
    before = embedder.embedded
    reused = (await clf.score(Conversation(Conversation.from_prompt(text).turns, vector, text))).score
    assert embedder.embedded == before, "no second forward pass"
    assert reused == pytest.approx(FIXED[2][1], abs=2e-3)
    assert (await clf.score(Conversation.from_prompt(text))).score == pytest.approx(reused, abs=1e-5)
    assert embedder.embedded == before + 1


def test_llm_answer_is_parsed_strictly() -> None:
    assert parse("COMPLEX") == "COMPLEX" and parse(" simple.\n") == "SIMPLE"
    for bad in ("", "MEDIUM-ish", "I think COMPLEX", "SIMPLE or MEDIUM", "complexity"):
        with pytest.raises(ClassifierError):
            parse(bad)


@pytest.fixture
def ollama(fakes: ThreadedFakes) -> Iterator[str]:
    yield fakes.ollama_url
    fakes.ollama.behaviour = Behaviour()


async def test_llm_classifier_names_the_tier(fakes: ThreadedFakes, ollama: str) -> None:
    clf = OllamaLLMClassifier(ollama, "granite4:350m", (0.35, 0.62), timeout_s=2.0)
    pipe = ClassifierPipeline([clf, HeuristicClassifier()], (0.35, 0.62), budget_s=2.0)
    for answer, tier in (("COMPLEX", "complex"), ("simple", "simple"), ("Medium.", "medium")):
        fakes.ollama.behaviour = Behaviour(reply=answer)
        d = await pipe.decide(Conversation.from_prompt("Design a banking API"))
        assert (d.classifier, d.tier) == ("llm", tier)
    sent = fakes.ollama.stats.last_body
    assert sent["model"] == "granite4:350m" and sent["messages"][0]["role"] == "system"
    await clf.aclose()


@pytest.mark.parametrize("behaviour", [Behaviour(reply="I would say COMPLEX"), Behaviour(fail_status=500),
                                       Behaviour(hang=True)])
async def test_llm_classifier_falls_through(fakes: ThreadedFakes, ollama: str, behaviour: Behaviour) -> None:
    fakes.ollama.behaviour = behaviour
    clf = OllamaLLMClassifier(ollama, "granite4:350m", (0.35, 0.62), timeout_s=0.5)
    d = await ClassifierPipeline([clf, HeuristicClassifier()], (0.35, 0.62), budget_s=0.3).decide(
        Conversation.from_prompt("Translate hello to German"))
    assert d.classifier == "heuristic" and d.tier == "simple" and d.skipped[0].startswith("llm")
    await clf.aclose()


async def test_llm_classifier_unreachable_falls_through() -> None:
    clf = OllamaLLMClassifier(f"http://127.0.0.1:{free_port()}", "granite4:350m", (0.35, 0.62), timeout_s=0.5)
    d = await ClassifierPipeline([clf, HeuristicClassifier()], (0.35, 0.62)).decide(Conversation.from_prompt("hi"))
    assert d.classifier == "heuristic"
    await clf.aclose()


def test_gateway_routes_with_the_embedding_classifier(fakes: ThreadedFakes) -> None:
    settings = make_settings(fakes, routing={"baseline": "pro", "classifiers": ["embedding", "heuristic"],
                                             "cutoffs": [0.6, 0.8]})
    with GatewayThread(settings) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=30, json={
            "model": "auto", "messages": [{"role": "user", "content": FIXED[3][0]}]})
        assert r.status_code == 200
        assert r.headers["x-smr-classifier"] == "embedding" and r.headers["x-smr-tier"] == "simple"
        assert httpx.get(gw.url + "/health").json()["classifiers"] == ["embedding", "heuristic"]


# ---------------------------------------------------------------- offline commands
def smr(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMR_ADMIN_KEY": "x"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_classify_keeps_order_and_count(tmp_path: Path) -> None:
    prompts = [{"prompt": f"Translate item {i} to French"} if i % 3 else
               {"messages": [{"role": "user", "content": f"Design and debug a distributed system number {i}"}]}
               for i in range(1000)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(p) for p in prompts) + "\n")
    out = tmp_path / "out.jsonl"
    r = smr("classify", "--classifier", "heuristic", "--input", str(src), "--output", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1000
    assert all(set(row) == {"score", "tier", "classifier"} and row["classifier"] == "heuristic" for row in rows)
    assert [row["tier"] == "complex" for row in rows] == [i % 3 == 0 for i in range(1000)]


def test_classify_with_the_embedding_classifier_from_stdin() -> None:
    lines = "\n".join(json.dumps({"prompt": p}) for p, _ in FIXED)
    r = smr("classify", "--classifier", "embedding", stdin=lines)
    assert r.returncode == 0, r.stderr
    scores = [json.loads(line)["score"] for line in r.stdout.splitlines()]
    assert scores == pytest.approx([k for _, k in FIXED], abs=2e-3)


def test_calibrate_writes_cutoffs_for_target_shares(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text((ROOT / "config.toml").read_text())
    src = tmp_path / "sample.jsonl"
    words = ["hi", "translate this", "explain decorators", "design a system", "debug and optimise this code"]
    src.write_text("\n".join(json.dumps({"prompt": f"{w} {'please ' * (i % 7)}{i}"}) for i, w in
                             enumerate(words * 40)) + "\n")
    r = smr("calibrate", "--config", str(cfg), "--classifier", "heuristic", "--input", str(src),
            "--shares", "0.5,0.3,0.2", "--write", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "cutoffs = [" in r.stdout
    out = smr("classify", "--config", str(cfg), "--classifier", "heuristic", "--input", str(src))
    tiers = [json.loads(line)["tier"] for line in out.stdout.splitlines()]
    shares = [tiers.count(t) / len(tiers) for t in ("simple", "medium", "complex")]
    assert shares[0] == pytest.approx(0.5, abs=0.1) and shares[2] == pytest.approx(0.2, abs=0.1)


def test_eval_prints_metrics_and_writes_the_curve(tmp_path: Path) -> None:
    data = tmp_path / "outcomes.jsonl"
    rows = [{"prompt": "hi there", "cheap_ok": True, "strong_ok": True},
            {"prompt": "Design and debug a distributed consensus protocol and prove it correct", "cheap_ok": False,
             "strong_ok": True},
            {"prompt": "translate cat to French", "cheap_ok": True, "strong_ok": True},
            {"prompt": "Optimise this algorithm's complexity and prove the bound", "cheap_ok": False,
             "strong_ok": True}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    png = tmp_path / "curve.png"
    r = smr("eval", "--classifier", "heuristic", "--data", str(data), "--png", str(png))
    assert r.returncode == 0, r.stderr
    # The heuristic puts both hard prompts first: the gap is recovered at 50 % strong calls.
    assert "| APGR | 0.750 |" in r.stdout and "| CPT(50%) | 25.0% |" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
