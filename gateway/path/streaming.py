"""Provider stream events -> OpenAI SSE: role on the first delta, content deltas, finish_reason,
a usage chunk when asked, then `data: [DONE]`. A failure mid-stream, of any kind, ends it with an error
event (and the request's row with that error)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import msgspec

from gateway.cache.base import CachedAnswer
from gateway.path.fallback import OpenStream, aclose_events
from gateway.providers.base import Completion, StreamEvent, tool_call_event
from gateway.vocab.errors import GatewayError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from gateway.vocab.pricing import Priced, fill_usage, price, with_first_call
from gateway.vocab.settings import Backend
from gateway.vocab.wire import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    ExplainedChunk,
    Explanation,
    Usage,
    encoder,
    split_pieces,
    usage_out,
)

DONE = b"data: [DONE]\n\n"
log = logging.getLogger("gateway")


def sse(payload: msgspec.Struct) -> bytes:
    return b"data: " + encoder.encode(payload) + b"\n\n"


class StreamSummary(msgspec.Struct):
    """What the stream ended with, handed to the caller's `on_done` once the stream is over."""

    priced: Priced | None = None
    error: GatewayError | None = None
    finish_reason: str | None = None
    text: str = ""
    cancelled: bool = False


async def to_sse(
    opened: OpenStream,
    req: ChatCompletionRequest,
    chunk_id: str,
    created: int,
    baseline: Backend,
    on_done: Callable[[StreamSummary], None] | None = None,
    smr: Explanation | None = None,
    spent_before: Priced | None = None,
) -> AsyncIterator[bytes]:
    """The open upstream stream as OpenAI SSE bytes; `on_done` gets the summary exactly once, however
    the stream ends (finished, failed mid-way, or the client went away), priced in every case: a stream
    cut short is priced on the upstream's usage if it sent one, else estimated from the prompt and the
    text relayed so far (a lower bound: the upstream may have generated a little more), so leaving a
    stream early does not make it free. `spent_before`: a cascade's first call, counted in the final
    chunk's cost."""
    model = opened.backend.name
    loop = asyncio.get_running_loop()
    idle = opened.backend.timeouts.first_token_s
    summary = StreamSummary()
    texts: list[str] = []
    usage: Usage | None = None

    def chunk(delta: Delta, finish: str | None = None) -> bytes:
        return sse(ChatCompletionChunk(chunk_id, created, model, [ChunkChoice(delta, 0, finish)]))

    def priced_so_far() -> Priced:
        """The text relayed so far and its usage (the upstream's, else estimated), priced into `summary`."""
        summary.text = "".join(texts)
        summary.priced = price(fill_usage(usage or Usage(estimated=True), req, summary.text, opened.backend),
                               opened.backend, baseline)
        return summary.priced

    try:
        ev: StreamEvent = opened.first
        delta = ev.delta or Delta()
        first = msgspec.structs.replace(delta, role="assistant", content=delta.content or "")
        yield sse(ExplainedChunk(chunk_id, created, model, [ChunkChoice(first, 0, ev.finish_reason)], smr=smr))
        while True:
            if ev.usage is not None:
                usage = ev.usage
            if ev.delta is not None and ev.delta.content:
                texts.append(ev.delta.content)
            if ev.finish_reason:
                summary.finish_reason = ev.finish_reason
            if ev is not opened.first and (ev.delta is not None or ev.finish_reason):
                yield chunk(ev.delta or Delta(), ev.finish_reason)
            try:
                async with asyncio.timeout(max(0.0, min(idle, opened.deadline - loop.time()))):
                    ev = await anext(opened.events)
            except StopAsyncIteration:
                break
        if summary.finish_reason is None:
            summary.finish_reason = "stop"
            yield chunk(Delta(), "stop")
        priced = priced_so_far()
        if req.include_usage:
            p = with_first_call(priced, spent_before) if spent_before else priced
            final = msgspec.structs.replace(smr, cost_usd=round(p.cost_usd, 10), savings_usd=round(p.savings_usd, 10),
                                            routing_savings_usd=round(p.routing_savings_usd, 10)) if smr else None
            yield sse(ExplainedChunk(chunk_id, created, model, [], usage_out(priced.usage), smr=final))
        yield DONE
    except TimeoutError:
        summary.error = UpstreamTimeout(f"{model}: stream stalled or ran past its time limit", backend=model)
        yield summary.error.to_json().join((b"data: ", b"\n\n"))
    except UpstreamError as exc:
        summary.error = type(exc)(f"{model}: stream failed mid-way: {exc.message}", backend=model,
                                  upstream_status=exc.upstream_status)
        yield summary.error.to_json().join((b"data: ", b"\n\n"))
    except (asyncio.CancelledError, GeneratorExit):
        summary.cancelled = True
        raise
    except Exception as exc:  # what no adapter mapped (a line past a reader's limit, a bug): still an error event
        log.exception("stream from %s failed with an unmapped error", model)
        summary.error = UpstreamProtocolError(f"{model}: stream failed mid-way: unreadable stream "
                                              f"({type(exc).__name__})", backend=model)
        yield summary.error.to_json().join((b"data: ", b"\n\n"))
    finally:
        try:
            await aclose_events(opened.events)
        finally:
            if summary.priced is None:  # cut short (client gone, upstream broke): what was generated is paid for
                priced_so_far()
            if on_done is not None:
                on_done(summary)


async def replay_sse(answer: CachedAnswer, req: ChatCompletionRequest, chunk_id: str,
                     created: int, smr: Explanation | None = None) -> AsyncIterator[bytes]:
    """A cached answer as a proper stream: role, content pieces, finish, usage when asked, [DONE]."""
    model = answer.backend
    pieces = split_pieces(answer.message.content or "", 8)
    for i, piece in enumerate(pieces):
        delta = Delta(role="assistant", content=piece) if i == 0 else Delta(content=piece)
        yield sse(ExplainedChunk(chunk_id, created, model, [ChunkChoice(delta, 0, None)], smr=smr if i == 0 else None))
    yield sse(ChatCompletionChunk(chunk_id, created, model, [ChunkChoice(Delta(), 0, answer.finish_reason or "stop")]))
    if req.include_usage:
        yield sse(ExplainedChunk(chunk_id, created, model, [], usage_out(answer.usage), smr=smr))
    yield DONE


def completion_events(c: Completion) -> tuple[StreamEvent, AsyncIterator[StreamEvent]]:
    """A whole answer as stream events (the first, and the rest): a cascade's checked answer, streamed."""
    events = [StreamEvent(delta=Delta(content=piece)) for piece in split_pieces(c.message.content or "", 8)]
    if c.message.tool_calls:
        events.append(tool_call_event(c.message.tool_calls, 0))
    events.append(StreamEvent(finish_reason=c.finish_reason or "stop", usage=c.usage))

    async def rest() -> AsyncIterator[StreamEvent]:
        for ev in events[1:]:
            yield ev

    return events[0], rest()
