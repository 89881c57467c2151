"""POST /v1/embeddings (issue 28) with the official openai SDK: the gateway's own MiniLM as the default (and
OpenAI's model names mapped to it), an Ollama embedding backend (the fake), float and base64, list and
token-array input, the request log with its cost, rate limits, and the 400/404 errors."""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, lookup_request, make_settings, new_api_key

ADMIN = "embeddings-admin"


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible and a Gemini embedding API in one (the fakes serve chat only)."""

    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def do_POST(self) -> None:  # http.server calls it by this name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/v1/embeddings":
            dims = body.get("dimensions", 8)
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            out: dict[str, Any] = {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 7,
                                                                                     "total_tokens": 7},
                                   "data": [{"object": "embedding", "index": i, "embedding": [0.5] * dims}
                                            for i in reversed(range(len(inputs)))]}  # any order: by index
        else:
            dims = body["requests"][0].get("outputDimensionality", 4)
            out = {"embeddings": [{"values": [0.25] * dims} for _ in body["requests"]]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str, upstream: str) -> Iterator[GatewayThread]:
    embeddings = {
        "default": "minilm",
        "backends": [{"name": "minilm", "input_price": 0.01},
                     {"name": "nomic", "provider": "ollama", "model": "nomic-embed-text", "connection": "local",
                      "input_price": 0.05},
                     {"name": "oai-embed", "provider": "openai", "model": "text-embedding-3-small",
                      "connection": "oai", "base_url": upstream + "/v1", "input_price": 0.02},
                     {"name": "gem-embed", "provider": "gemini", "model": "gemini-embedding-001",
                      "connection": "flash", "base_url": upstream, "input_price": 0.15}]}
    settings = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN}, embeddings=embeddings)
    with GatewayThread(settings) as g:
        yield g


def new_key(gw: GatewayThread, **limits: object) -> str:
    return new_api_key(gw, ADMIN, "embed", "emb", **limits)


@pytest.fixture(scope="module")
def key(gw: GatewayThread) -> str:
    return new_key(gw)


def client(gw: GatewayThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_openai_model_names_map_to_the_local_minilm(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c:
        got = c.embeddings.create(model="text-embedding-3-small",
                                  input=["The cat sat on the mat", "A cat was sitting on a mat", "Stock prices fell"],
                                  encoding_format="float")
    assert got.model == "minilm" and [d.index for d in got.data] == [0, 1, 2]
    vectors = [d.embedding for d in got.data]
    assert all(len(v) == 384 for v in vectors)
    assert math.isclose(float(np.linalg.norm(vectors[0])), 1.0, abs_tol=1e-3)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2  # meaning, not noise
    assert got.usage.prompt_tokens > 0 and got.usage.total_tokens == got.usage.prompt_tokens


def test_base64_decodes_to_the_float_vectors(gw: GatewayThread, key: str) -> None:
    text = "base64 and float agree"
    with client(gw, key) as c:
        floats = c.embeddings.create(model="minilm", input=text, encoding_format="float").data[0].embedding
        wire = c.embeddings.create(model="minilm", input=text, encoding_format="base64").data[0].embedding
        sdk = c.embeddings.create(model="minilm", input=text).data[0].embedding  # asks base64, decodes it
    assert isinstance(wire, str)
    decoded = np.frombuffer(base64.b64decode(wire), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-6) and np.allclose(sdk, floats, atol=1e-6)


def test_ollama_backend_and_the_sdk_default_encoding(gw: GatewayThread, key: str, fakes: ThreadedFakes) -> None:
    with client(gw, key) as c:
        raw = c.embeddings.with_raw_response.create(model="nomic", input=["one", "two"])  # SDK default: base64
        got = raw.parse()
    assert fakes.ollama.stats.last_body == {"model": "nomic-embed-text", "input": ["one", "two"]}
    assert len(got.data) == 2 and len(got.data[0].embedding) == 32
    assert raw.headers["x-smr-provider"] == "ollama" and float(raw.headers["x-smr-cost-usd"]) > 0


def test_logged_with_its_cost(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c:
        raw = c.embeddings.with_raw_response.create(model="minilm", input="log this embedding")
    smr = raw.http_response.json()["smr"]
    r = lookup_request(gw, smr["request_id"], key)
    assert r.status_code == 200, r.text
    row = r.json()
    assert row["endpoint"] == "/v1/embeddings" and row["status"] == 200
    assert row["smr"]["model"] == "minilm" and row["smr"]["cost_usd"] > 0
    assert row["smr"]["cost_usd"] == pytest.approx(float(raw.headers["x-smr-cost-usd"]), abs=1e-8)


def test_rate_limited_key_gets_429(gw: GatewayThread) -> None:
    limited = new_key(gw, rate_limit_rpm=1)
    with client(gw, limited) as c:
        first = c.embeddings.with_raw_response.create(model="minilm", input="once")
        assert first.headers["x-ratelimit-limit-requests"] == "1"
        with pytest.raises(openai.RateLimitError) as err:
            c.embeddings.create(model="minilm", input="twice")
    assert err.value.code == "rate_limit_exceeded"


def test_a_budget_too_small_refuses_before_any_call(gw: GatewayThread) -> None:
    poor = new_key(gw, budget_usd=1e-9)
    with client(gw, poor) as c, pytest.raises(openai.RateLimitError) as err:
        c.embeddings.create(model="minilm", input="a sentence that costs more than the budget")
    assert err.value.code == "budget_exceeded"


def test_unknown_model_is_a_404(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c, pytest.raises(openai.NotFoundError) as err:
        c.embeddings.create(model="no-such-embedder", input="hi")
    assert err.value.code == "model_not_found"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "minilm", "input": [[1, 2, 3]]}, "input"),         # token arrays: MiniLM takes text
    ({"model": "nomic", "input": "hi", "dimensions": 8}, "dimensions"),
    ({"model": "minilm", "input": ""}, "input"),
    ({"model": "minilm", "input": []}, "input"),
    ({"model": "minilm", "input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "minilm", "input": "hi", "vendor_knob": 1}, "vendor_knob")])
def test_refused_requests_name_the_field(gw: GatewayThread, key: str, body: dict[str, object], param: str) -> None:
    r = httpx.post(gw.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and param in (err["param"] or "") + err["message"]


def test_models_lists_what_each_model_serves(gw: GatewayThread, key: str) -> None:
    r = httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    cards = {m["id"]: m for m in r.json()["data"]}
    assert cards["minilm"]["endpoints"] == ["/v1/embeddings"] and cards["nomic"]["owned_by"] == "ollama"
    assert cards["text-embedding-3-small"]["endpoints"] == ["/v1/embeddings"]
    assert cards["oai"]["endpoints"] == ["/v1/chat/completions", "/v1/responses"]
    assert cards["auto"]["endpoints"] == ["/v1/chat/completions", "/v1/responses"]


def test_openai_compatible_backend_takes_token_arrays_and_dimensions(gw: GatewayThread, key: str) -> None:
    Upstream.seen.clear()
    with client(gw, key) as c:
        got = c.embeddings.create(model="oai-embed", input=[[1, 2, 3], [4, 5]], dimensions=16,
                                  encoding_format="float")
    path, headers, body = Upstream.seen[-1]
    assert path == "/v1/embeddings" and headers["authorization"] == "Bearer test-key"  # the `oai` connection's
    assert body["model"] == "text-embedding-3-small" and body["input"] == [[1, 2, 3], [4, 5]]
    assert body["dimensions"] == 16
    assert [d.index for d in got.data] == [0, 1] and len(got.data[0].embedding) == 16
    assert got.usage.prompt_tokens == 7  # the upstream's count


def test_gemini_backend(gw: GatewayThread, key: str) -> None:
    Upstream.seen.clear()
    with client(gw, key) as c:
        got = c.embeddings.create(model="gem-embed", input=["a", "b"], dimensions=6, encoding_format="float")
    path, headers, body = Upstream.seen[-1]
    assert path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert headers["x-goog-api-key"] == "test-key"
    assert body["requests"][1] == {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                                   "outputDimensionality": 6}
    assert [len(d.embedding) for d in got.data] == [6, 6]
