"""An in-process provider for unit tests: it answers through a handler function, with no sockets.

As httpx's `MockTransport` stands in for the network, `FakeProvider` stands in for an adapter and fits
the same slot (`Providers({"name": FakeProvider(backend, handler)})`):

    FakeProvider(backend, lambda call: Reply("hello there"))

The handler sees each `UpstreamCall` and returns a `Reply`, or raises an `UpstreamError` to fail the
call as a real adapter would. A reply can stream slowly (`delay_s`) or break after some events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from gateway.providers.base import Completion, StreamEvent, UpstreamCall, tool_call_event
from gateway.vocab.errors import UpstreamConnectError
from gateway.vocab.settings import Backend
from gateway.vocab.wire import Delta, ResponseMessage, ToolCall, Usage, split_pieces


@dataclass
class Reply:
    text: str = "fake answer"
    finish_reason: str = "stop"
    usage: Usage | None = field(default_factory=lambda: Usage(10, 5, 15))
    pieces: int = 3                     # a stream carries the text in this many deltas
    delay_s: float = 0.0                # wait before answering, and between streamed events
    fail_after: int | None = None       # a stream raises `error` after this many content events
    error: Exception | None = None      # default: the connection broke (any exception: an adapter's bug)
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None          # OpenAI's refusal field


class FakeProvider:
    def __init__(self, backend: Backend, handler: Callable[[UpstreamCall], Reply] = lambda call: Reply()) -> None:
        self.backend = backend
        self.handler = handler
        self.calls: list[UpstreamCall] = []
        self.streams_closed = 0
        self.reason: str | None = None  # set to make the backend "not configured"

    def unavailable_reason(self) -> str | None:
        return self.reason

    async def complete(self, call: UpstreamCall) -> Completion:
        self.calls.append(call)
        reply = self.handler(call)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return Completion(ResponseMessage(content=reply.text, tool_calls=reply.tool_calls, refusal=reply.refusal),
                          reply.finish_reason, reply.usage or Usage(estimated=True))

    async def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]:
        self.calls.append(call)
        reply = self.handler(call)
        try:
            for i, piece in enumerate(split_pieces(reply.text, reply.pieces)):
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                if reply.fail_after is not None and i >= reply.fail_after:
                    raise reply.error or UpstreamConnectError("connection reset", backend=self.backend.name)
                yield StreamEvent(delta=Delta(content=piece))
            if reply.tool_calls:
                yield tool_call_event(reply.tool_calls, 0)
            yield StreamEvent(finish_reason=reply.finish_reason, usage=reply.usage)
        finally:
            self.streams_closed += 1

    async def aclose(self) -> None:
        return None
