"""The official openai SDK, sync and async, streaming and not, against the gateway in front of each
fake upstream type."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread

MODELS = {"local": "ollama", "flash": "gemini", "oai": "openai"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def sync_client(gw: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_sync_completion(gateway: GatewayThread, model: str) -> None:
    with sync_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Say hello to the world"}])
        resp = raw.parse()
    assert resp.model == model
    assert resp.choices[0].message.role == "assistant"
    assert "Say hello to the world" in resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 5 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert raw.headers["x-smr-provider"] == MODELS[model]
    assert raw.headers["x-smr-model"] == model
    assert raw.headers["x-smr-tier"] == "direct"
    assert float(raw.headers["x-smr-cost-usd"]) > 0


@pytest.mark.parametrize("model", MODELS)
def test_sync_stream_with_usage(gateway: GatewayThread, model: str) -> None:
    with sync_client(gateway) as client:
        stream = client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Tell me about streaming responses please"}])
        chunks = list(stream)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3, "the answer should arrive in several pieces"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Tell me about streaming responses please" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("model", MODELS)
async def test_async_completion_and_stream(gateway: GatewayThread, model: str) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        resp = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "async question here"}], temperature=0.2,
            max_tokens=50)
        assert "async question here" in resp.choices[0].message.content
        stream = await client.chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "async streamed question"}])
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "async streamed question" in text
    # Without include_usage there is no usage chunk.
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["oai", "flash", "local"])
def test_tool_call_round_trip(gateway: GatewayThread, model: str) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris"}]
    with sync_client(gateway) as client:
        first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                               tool_choice="auto")
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'})
        second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "21" in second.choices[0].message.content


@pytest.mark.parametrize("model", ["oai", "flash", "local"])
def test_streamed_tool_call(gateway: GatewayThread, model: str) -> None:
    with sync_client(gateway) as client:
        chunks = list(client.chat.completions.create(
            model=model, stream=True, tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather in Oslo"}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == {"city": "Oslo"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_gemini_request_translation(gateway: GatewayThread, fakes: ThreadedFakes) -> None:
    """System -> systemInstruction, assistant -> model, sampling -> generationConfig."""
    with sync_client(gateway) as client:
        client.chat.completions.create(
            model="flash", temperature=0.3, top_p=0.9, max_completion_tokens=77, stop=["END"], seed=7,
            response_format={"type": "json_object"},
            messages=[{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": [{"type": "text", "text": "part one"},
                                                   {"type": "text", "text": "part two"}]}])
    body = fakes.gemini.stats.last_body
    assert fakes.gemini.stats.last_path.endswith("/models/gemini-2.5-flash:generateContent")
    assert body["systemInstruction"]["parts"][0]["text"] == "You are terse."
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert [p["text"] for p in body["contents"][2]["parts"]] == ["part one", "part two"]
    cfg = body["generationConfig"]
    assert cfg["temperature"] == 0.3 and cfg["topP"] == 0.9 and cfg["maxOutputTokens"] == 77
    assert cfg["stopSequences"] == ["END"] and cfg["seed"] == 7
    assert cfg["responseMimeType"] == "application/json"


def test_ollama_request_translation(gateway: GatewayThread, fakes: ThreadedFakes) -> None:
    with sync_client(gateway) as client:
        client.chat.completions.create(
            model="local", temperature=0.1, max_tokens=12, stop="STOP", seed=3,
            messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "hey"}])
    body = fakes.ollama.stats.last_body
    assert body["model"] == "granite4:350m"
    assert body["messages"] == [{"role": "system", "content": "rules"}, {"role": "user", "content": "hey"}]
    assert body["options"] == {"temperature": 0.1, "num_predict": 12, "stop": ["STOP"], "seed": 3}
    assert body["stream"] is False


def test_unknown_fields_are_forwarded_to_openai_upstreams(gateway: GatewayThread, fakes: ThreadedFakes) -> None:
    with sync_client(gateway) as client:
        client.chat.completions.create(
            model="oai", messages=[{"role": "user", "content": "hi", "name": "alice"}],
            logit_bias={"50256": -100}, user="u-1", seed=11,
            extra_body={"reasoning_effort": "low", "vendor_knob": {"a": 1}})
    body = fakes.openai.stats.last_body
    assert body["model"] == "gpt-4o-mini"
    assert body["logit_bias"] == {"50256": -100}
    assert body["reasoning_effort"] == "low" and body["vendor_knob"] == {"a": 1}
    assert body["user"] == "u-1" and body["seed"] == 11
    assert body["messages"] == [{"role": "user", "content": "hi", "name": "alice"}]


def test_models_list(gateway: GatewayThread) -> None:
    with sync_client(gateway) as client:
        models = list(client.models.list())
    ids = [m.id for m in models]
    assert ids[:4] == ["auto", "smr/simple", "smr/medium", "smr/complex"]
    chat = [m.id for m in models if "/v1/chat/completions" in (m.model_extra or {}).get("endpoints", [])]
    assert set(chat[4:]) == {"local", "flash", "pro", "oai"}
    assert {"minilm", "text-embedding-3-small"} <= set(ids) - set(chat)  # embeddings: listed, not as chat models


def test_the_readmes_sdk_snippet_runs_as_printed(gateway: GatewayThread, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("The openai SDK, unchanged but for `base_url`:\n\n```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet.replace("http://127.0.0.1:8080/v1", gateway.url + "/v1"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    text = re.sub(r"CompletionUsage\([^)]*\)", "", out)
    assert "CompletionUsage(" in out and "None" not in text  # the text, then the usage; no finish chunk's None
    assert "Simulated answer to: Name three prime numbers" in out
    assert "\n2 384\n" in out  # two embeddings of MiniLM's 384 dimensions
