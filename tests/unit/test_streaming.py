"""Provider stream events -> OpenAI SSE, without sockets: what an OpenAI client reads off the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from gateway.cache.base import CachedAnswer
from gateway.path.fallback import OpenStream
from gateway.path.streaming import StreamSummary, replay_sse, to_sse
from gateway.providers.base import StreamEvent, tool_call_event
from gateway.vocab.errors import UpstreamTimeout
from gateway.vocab.settings import Backend, Timeouts
from gateway.vocab.wire import (
    ChatCompletionRequest,
    Delta,
    FunctionCall,
    Message,
    ResponseMessage,
    StreamOptions,
    ToolCall,
    Usage,
)

BACKEND = Backend(name="b", provider="openai", model="m", input_price=1.0, output_price=2.0)
BASELINE = Backend(name="big", provider="openai", model="big", input_price=10.0, output_price=20.0)


def request(include_usage: bool = False) -> ChatCompletionRequest:
    return ChatCompletionRequest([Message("user", "weather in Paris?")], stream=True,
                                 stream_options=StreamOptions(include_usage) if include_usage else None)


async def events(*evs: StreamEvent, stall_s: float = 0.0) -> AsyncIterator[StreamEvent]:
    for ev in evs:
        yield ev
    if stall_s:
        await asyncio.sleep(stall_s)


async def collect(stream: AsyncIterator[bytes]) -> list[object]:
    out: list[object] = []
    async for chunk in stream:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        data = chunk[6:-2].decode()
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def opened(first: StreamEvent, rest: AsyncIterator[StreamEvent], backend: Backend = BACKEND) -> OpenStream:
    return OpenStream(backend, first, rest, [], asyncio.get_running_loop().time() + 10)


async def test_text_and_tool_call_deltas_then_usage_and_done() -> None:
    call = ToolCall("call_1", FunctionCall("weather", '{"city": "Paris"}'))
    summaries: list[StreamSummary] = []
    sse = to_sse(opened(StreamEvent(delta=Delta(content="Let me check")),
                        events(tool_call_event([call], 0),
                               StreamEvent(finish_reason="tool_calls", usage=Usage(7, 3, 10)))),
                 request(include_usage=True), "chatcmpl-1", 123, BASELINE, summaries.append)
    got = await collect(sse)
    first, tool, finish, usage, done = got
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Let me check"}  # type: ignore[index]
    assert first["id"] == "chatcmpl-1" and first["model"] == "b" and first["object"] == "chat.completion.chunk"  # type: ignore[index]
    tc = tool["choices"][0]["delta"]["tool_calls"][0]  # type: ignore[index]
    assert tc["index"] == 0 and tc["id"] == "call_1" and tc["function"]["name"] == "weather"
    assert finish["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 10  # type: ignore[index]
    assert done == "[DONE]"
    (s,) = summaries
    assert s.finish_reason == "tool_calls" and s.error is None and s.text == "Let me check"
    assert s.priced is not None and s.priced.cost_usd == (7 * 1.0 + 3 * 2.0) / 1e6
    assert s.priced.baseline_cost_usd == (7 * 10.0 + 3 * 20.0) / 1e6


async def test_usage_chunk_only_when_asked_and_estimated_when_missing() -> None:
    summaries: list[StreamSummary] = []
    got = await collect(to_sse(opened(StreamEvent(delta=Delta(content="hi there")), events()),
                               request(), "c", 1, BASELINE, summaries.append))
    assert not any(isinstance(e, dict) and e.get("usage") for e in got)
    assert got[-2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]  # a finish is always sent
    assert summaries[0].priced is not None and summaries[0].priced.usage.estimated


async def test_a_stalled_stream_ends_with_a_timeout_error_event() -> None:
    slow = Backend(name="slow", provider="openai", model="m", timeouts=Timeouts(first_token_s=0.05))
    summaries: list[StreamSummary] = []
    got = await collect(to_sse(opened(StreamEvent(delta=Delta(content="a")), events(stall_s=1), slow),
                               request(), "c", 1, BASELINE, summaries.append))
    assert "[DONE]" not in got
    assert got[-1]["error"]["code"] == "upstream_timeout"  # type: ignore[index]
    assert isinstance(summaries[0].error, UpstreamTimeout)


async def test_replayed_cache_hit_is_a_proper_stream() -> None:
    answer = CachedAnswer(ResponseMessage(content="one two three four five"), "stop", Usage(5, 5, 10), "b", "openai",
                          "simple", "q", 1)
    got = await collect(replay_sse(answer, request(include_usage=True), "c", 1))
    chunks = [e for e in got if isinstance(e, dict)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index]
    assert text == "one two three four five"
    assert chunks[-1]["usage"]["total_tokens"] == 10 and got[-1] == "[DONE]"  # type: ignore[index]
