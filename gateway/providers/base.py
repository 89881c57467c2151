"""The provider contract: translate an OpenAI-shaped request for one backend, and its answer back.

A provider never caches, logs, routes or retries; it raises `UpstreamError` subclasses and the
service decides what to do. Every call carries an output cap (`output_cap`), so an answer never
costs more than its budget reservation assumed. A whole answer and a streamed one use the same
pieces: a `Completion` is one message plus usage, a stream is `StreamEvent`s whose deltas add up to
that message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import msgspec

from gateway.vocab.settings import Backend
from gateway.vocab.wire import (
    ChatCompletionRequest,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ResponseMessage,
    ToolCall,
    Usage,
)


class UpstreamCall(msgspec.Struct, frozen=True):
    request: ChatCompletionRequest
    # The request body as the client sent it: OpenAI-compatible upstreams get every field of it.
    raw: dict[str, object]


class Completion(msgspec.Struct, frozen=True):
    message: ResponseMessage
    finish_reason: str | None
    usage: Usage


class StreamEvent(msgspec.Struct, frozen=True):
    delta: Delta | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


def output_cap(req: ChatCompletionRequest, backend: Backend) -> int:
    """The answer's token cap every adapter sends: `max_completion_tokens` or `max_tokens` as asked, else the
    backend's `max_output_tokens`, which is what a budget reserves for a request without one."""
    asked = req.output_limit
    return backend.max_output_tokens if asked is None else asked


def tool_call_event(calls: list[ToolCall], first_index: int) -> StreamEvent:
    """Whole tool calls (as Ollama and Gemini send them) as one streamed OpenAI delta."""
    return StreamEvent(delta=Delta(tool_calls=[
        DeltaToolCall(index=first_index + i, id=tc.id, type="function",
                      function=DeltaFunction(tc.function.name, tc.function.arguments))
        for i, tc in enumerate(calls)]))


class Provider(Protocol):
    backend: Backend

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot be called at all (no key, no URL), or None."""
        ...

    async def complete(self, call: UpstreamCall) -> Completion: ...

    def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...
