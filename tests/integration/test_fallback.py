"""Fallback along a tier's chain, the all-fail error, and failures in the middle of a stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.gemini_fake import FakeGemini
from gateway.fakes.openai_fake import FakeOpenAI
from gateway.fakes.server import ThreadedFakes, free_port
from gateway.vocab.settings import Backend, Timeouts
from tests.helpers import GatewayThread, make_settings

QUICK = Timeouts(connect_s=0.5, first_token_s=1.0, total_s=1.5)


class Flaky:
    def __init__(self, fakes: ThreadedFakes) -> None:
        self.gemini = FakeGemini()
        self.openai = FakeOpenAI()
        self.gemini_url = fakes.add(self.gemini)
        self.openai_url = fakes.add(self.openai) + "/v1"


@pytest.fixture(scope="module")
def flaky(fakes: ThreadedFakes) -> Flaky:
    return Flaky(fakes)


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, flaky: Flaky) -> Iterator[GatewayThread]:
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    extra = [
        Backend(name="dead", provider="ollama", model="granite4:350m", base_url=dead_url, timeouts=QUICK),
        Backend(name="flaky-gemini", provider="gemini", model="gemini-2.5-flash", base_url=flaky.gemini_url,
                api_key="k", timeouts=QUICK),
        Backend(name="flaky-oai", provider="openai", model="gpt-4o-mini", base_url=flaky.openai_url,
                api_key="k", timeouts=QUICK),
        Backend(name="nokey", provider="gemini", model="gemini-2.5-pro", timeouts=QUICK),
    ]
    tiers = {"simple": ["dead", "local"], "medium": ["flaky-gemini", "flash"], "complex": ["flaky-oai", "oai"]}
    with GatewayThread(make_settings(fakes, extra, tiers)) as g:
        yield g


@pytest.fixture(autouse=True)
def _reset_flaky(flaky: Flaky) -> Iterator[None]:
    yield
    flaky.gemini.behaviour = Behaviour()
    flaky.openai.behaviour = Behaviour()


def post(gw: GatewayThread, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)


def ask(tier: str, stream: bool = False) -> dict[str, object]:
    return {"model": f"smr/{tier}", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]}


def test_connection_refused_falls_back(gw: GatewayThread) -> None:
    r = post(gw, ask("simple"))
    assert r.status_code == 200
    assert r.headers["x-smr-model"] == "local"
    assert "fake-ollama" in r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_upstream_error_status_falls_back(gw: GatewayThread, flaky: Flaky, status: int) -> None:
    flaky.gemini.behaviour = Behaviour(fail_status=status)
    r = post(gw, ask("medium"))
    assert r.status_code == 200
    assert r.headers["x-smr-model"] == "flash"
    assert flaky.gemini.stats.requests >= 1


def test_timeout_falls_back(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(hang=True)
    started = time.perf_counter()
    r = post(gw, ask("complex"))
    elapsed = time.perf_counter() - started
    assert r.status_code == 200 and r.headers["x-smr-model"] == "oai"
    assert 1.4 < elapsed < 5, "the hung backend is abandoned at its total timeout"


def test_stream_falls_back_before_first_byte(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(fail_status=500)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    chunks = list(client.chat.completions.create(**ask("complex", stream=True)))  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "fake-openai gpt-4o-mini" in text
    assert flaky.openai.stats.requests >= 1


def test_malformed_upstream_json_falls_back(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(malformed=True)
    r = post(gw, ask("complex"))
    assert r.status_code == 200 and r.headers["x-smr-model"] == "oai"


def test_all_backends_fail(gw: GatewayThread, flaky: Flaky, fakes: ThreadedFakes) -> None:
    flaky.gemini.behaviour = Behaviour(fail_status=500)
    fakes.gemini.behaviour = Behaviour(fail_status=503)
    r = post(gw, ask("medium"))
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "upstream_error" and err["code"] == "all_backends_failed"
    assert "flaky-gemini" in err["message"] and "flash" in err["message"]
    assert "500" in err["message"] and "503" in err["message"]


def test_all_backends_time_out_is_504(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(hang=True)
    r = post(gw, {**ask("complex"), "model": "flaky-oai"})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "all_backends_failed"


def test_missing_key_is_503_naming_the_backend(gw: GatewayThread) -> None:
    r = post(gw, {**ask("complex"), "model": "nokey"})
    assert r.status_code == 503
    msg = r.json()["error"]["message"]
    assert "nokey" in msg and "GOOGLE_API_KEY is not set" in msg


def test_upstream_client_error_is_not_retried(gw: GatewayThread, flaky: Flaky, fakes: ThreadedFakes) -> None:
    flaky.openai.behaviour = Behaviour(fail_status=400)
    before = fakes.openai.stats.requests
    r = post(gw, ask("complex"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "upstream_rejected"
    assert fakes.openai.stats.requests == before, "a request the upstream calls invalid is not sent elsewhere"


def test_stream_cut_mid_way_ends_with_error_event(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(cut_stream_after=2, pieces=6)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(**{**ask("complex", stream=True), "model": "flaky-oai"}):
            seen.append(c.choices[0].delta.content or "")
    assert len(seen) >= 1
    assert "flaky-oai" in str(info.value.message)


def test_stalled_stream_ends_with_error_event(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.gemini.behaviour = Behaviour(chunk_delay_ms=3000, pieces=4)
    started = time.perf_counter()
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=10,
                      json={**ask("medium", stream=True), "model": "flaky-gemini"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert time.perf_counter() - started < 4
    assert lines[0].startswith("data: {") and '"role":"assistant"' in lines[0]
    assert '"error"' in lines[-1] and "upstream_timeout" in lines[-1]
    assert "[DONE]" not in lines[-1]


def test_client_disconnect_cancels_upstream(gw: GatewayThread, flaky: Flaky) -> None:
    flaky.openai.behaviour = Behaviour(chunk_delay_ms=100, pieces=30, reply=" ".join(["word"] * 40))
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=10,
                      json={**ask("complex", stream=True), "model": "flaky-oai"}) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(3)]
    assert got[0].startswith("data: ")
    deadline = time.time() + 5
    while flaky.openai.stats.streams_cancelled == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert flaky.openai.stats.streams_cancelled == 1
    assert flaky.openai.stats.streams_completed == 0
