"""POST /v1/responses (issue 28) with the official openai SDK, in front of each fake upstream type: string
and item input, a function tool round trip, json_schema output, instructions, the event stream, refused
fields, rate limits and the request log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, lookup_request, make_settings, new_api_key

ADMIN = "responses-admin"
MODELS = {"local": "ollama", "flash": "gemini", "oai": "openai"}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gw(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    with GatewayThread(make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN})) as g:
        yield g


def new_key(gw: GatewayThread, **limits: object) -> str:
    return new_api_key(gw, ADMIN, "responses", "resp", **limits)


@pytest.fixture(scope="module")
def key(gw: GatewayThread) -> str:
    return new_key(gw)


def client(gw: GatewayThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_string_input(gw: GatewayThread, key: str, model: str) -> None:
    with client(gw, key) as c:
        raw = c.responses.with_raw_response.create(model=model, input="Say hello to the world")
        resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.model == model and "Say hello to the world" in resp.output_text
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.store is False  # absent `store` is served, and said to be, not stored
    assert raw.headers["x-smr-provider"] == MODELS[model] and float(raw.headers["x-smr-cost-usd"]) > 0
    smr = raw.http_response.json()["smr"]
    assert smr["model"] == model and smr["route"] == "direct" and smr["request_id"]


def test_instructions_and_sampling_reach_the_upstream(gw: GatewayThread, key: str, fakes: ThreadedFakes) -> None:
    with client(gw, key) as c:
        resp = c.responses.create(model="oai", instructions="You are terse.", input="hi there", temperature=0.3,
                                  top_p=0.9, max_output_tokens=77, user="u-7", metadata={"app": "test"},
                                  store=False)
    body = fakes.openai.stats.last_body
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "hi there"}]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["max_completion_tokens"] == 77
    assert body["user"] == "u-7"
    assert resp.instructions == "You are terse." and resp.metadata == {"app": "test"}
    assert resp.temperature == 0.3 and resp.max_output_tokens == 77


@pytest.mark.parametrize("model", ["oai", "flash", "local"])
def test_function_tool_round_trip_with_items(gw: GatewayThread, key: str, model: str) -> None:
    items: list[dict[str, object]] = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris"}]}]
    with client(gw, key) as c:
        first = c.responses.create(model=model, input=items, tools=[WEATHER], tool_choice="auto")  # type: ignore[arg-type]
        calls = [o for o in first.output if o.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert json.loads(calls[0].arguments) == {"city": "Paris"}
        items += [o.model_dump(exclude_none=True) for o in first.output]
        items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'})
        second = c.responses.create(model=model, input=items, tools=[WEATHER])  # type: ignore[arg-type]
    assert second.status == "completed" and "21" in second.output_text


def test_json_schema_text_format(gw: GatewayThread, key: str, fakes: ThreadedFakes) -> None:
    fakes.openai.behaviour = Behaviour(reply='{"city": "Oslo", "temp_c": 3}')
    fmt = {"type": "json_schema", "name": "weather", "strict": True,
           "schema": {"type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
                      "required": ["city", "temp_c"], "additionalProperties": False}}
    with client(gw, key) as c:
        resp = c.responses.create(model="oai", input="Weather in Oslo as JSON", text={"format": fmt})  # type: ignore[typeddict-item]
    sent = fakes.openai.stats.last_body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "weather", "schema": fmt["schema"], "strict": True}}
    assert json.loads(resp.output_text) == {"city": "Oslo", "temp_c": 3}
    assert resp.text.format is not None and resp.text.format.type == "json_schema"


@pytest.mark.parametrize("model", MODELS)
def test_stream_events_in_order_with_usage_and_smr(gw: GatewayThread, key: str, model: str) -> None:
    with client(gw, key) as c, c.responses.stream(model=model, input="Tell me about streaming responses please") as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds.count("response.output_text.delta") >= 2
    assert "Tell me about streaming responses please" in final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    smr = final.model_extra["smr"] if final.model_extra else None  # type: ignore[index]
    assert smr is not None and smr["model"] == model and smr["cost_usd"] > 0


def test_streamed_function_call(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c:
        events: list[Any] = list(c.responses.create(model="oai", input="Weather in Oslo",
                                                    tools=[WEATHER], stream=True))  # type: ignore[list-item]
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Oslo"}
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [o.type for o in completed.response.output] == ["function_call"]


@pytest.mark.parametrize(("field", "value"), [
    ("store", True), ("previous_response_id", "resp_123"), ("background", True),
    ("include", ["file_search_call.results"]), ("tools", [{"type": "web_search"}]), ("top_logprobs", 3),
    ("truncation", "auto"), ("vendor_knob", 1), ("metadata", {f"k{i}": "v" for i in range(17)})])
def test_refused_fields_name_themselves(gw: GatewayThread, key: str, field: str, value: object) -> None:
    r = httpx.post(gw.url + "/v1/responses", json={"model": "oai", "input": "hi", field: value},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and field in err["param"] and field in err["message"]
    if field == "tools":
        assert "web_search" in err["message"]


def test_unknown_model_is_a_404_like_chat(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c, pytest.raises(openai.NotFoundError) as err:
        c.responses.create(model="no-such-model", input="hi")
    assert err.value.code == "model_not_found"


def test_rate_limited_key_gets_429(gw: GatewayThread) -> None:
    limited = new_key(gw, rate_limit_rpm=1)
    with client(gw, limited) as c:
        c.responses.create(model="local", input="hello there")
        with pytest.raises(openai.RateLimitError) as err:
            c.responses.create(model="local", input="hello there")
    assert err.value.code == "rate_limit_exceeded"


def test_the_request_is_logged_with_its_cost(gw: GatewayThread, key: str) -> None:
    with client(gw, key) as c:
        raw = c.responses.with_raw_response.create(model="flash", input="log me please")
    request_id = raw.http_response.json()["smr"]["request_id"]
    r = lookup_request(gw, request_id, key)
    assert r.status_code == 200, r.text
    row = r.json()
    assert row["endpoint"] == "/v1/responses" and row["status"] == 200 and row["smr"]["model"] == "flash"
    cost = row["smr"]["cost_usd"]
    assert cost > 0 and cost == pytest.approx(float(raw.headers["x-smr-cost-usd"]), abs=1e-8)


async def test_an_agents_sdk_agent_calls_its_function_tool(gw: GatewayThread, key: str) -> None:
    """The OpenAI Agents SDK (its default model class speaks the Responses API) with a function tool."""
    agents = pytest.importorskip("agents")
    called: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        called.append(city)
        return f"{city}: 21 C and sunny"

    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0) as c:
        agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather],
                             model=agents.OpenAIResponsesModel(model="oai", openai_client=c))
        result = await agents.Runner.run(agent, "Weather in Paris", run_config=agents.RunConfig(tracing_disabled=True))
    assert called == ["Paris"]
    assert "21 C and sunny" in result.final_output


def test_a_stream_broken_mid_way_ends_with_error_and_response_failed(gw: GatewayThread, key: str,
                                                                    fakes: ThreadedFakes) -> None:
    fakes.openai.behaviour = Behaviour(cut_stream_after=1, pieces=6)
    with client(gw, key) as c:
        events: list[Any] = list(c.responses.create(model="oai", input="a long answer please", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"], kinds
    assert events[-1].response.status == "failed" and events[-1].response.error.code
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_repeated_request_is_answered_from_the_cache(fakes: ThreadedFakes, redis_stack: EmbeddedRedis) -> None:
    settings = make_settings(fakes, cache={"enabled": True, "semantic": False}, redis={"url": redis_stack.url})
    with GatewayThread(settings) as g, client(g, "unused") as c:
        first = c.responses.with_raw_response.create(model="flash", input="What is the capital of France?")
        deadline = time.time() + 10  # answers are stored just after the response has gone: wait for it
        while True:
            again = c.responses.with_raw_response.create(model="flash", input="What is the capital of France?")
            if again.headers["x-smr-cache"] != "miss" or time.time() > deadline:
                break
            time.sleep(0.05)
        streamed = list(c.responses.create(model="flash", input="What is the capital of France?", stream=True))
    assert first.headers["x-smr-cache"] == "miss" and again.headers["x-smr-cache"] == "hit-exact"
    assert again.parse().output_text == first.parse().output_text
    done: Any = streamed[-1]
    assert done.type == "response.completed" and done.response.output_text == first.parse().output_text
    assert done.response.model_extra["smr"]["cache"] == "hit-exact"
