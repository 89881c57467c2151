"""The chat stream of the request path (OpenAI chat SSE) -> the Responses API's event stream.

    response.created, response.in_progress
    per output item: response.output_item.added, then for a message response.content_part.added,
        response.output_text.delta ..., response.output_text.done, response.content_part.done; for a
        function call response.function_call_arguments.delta ..., response.function_call_arguments.done;
        then response.output_item.done
    response.completed (or response.incomplete when the answer was cut by max_output_tokens) with the usage
        and the final `smr` (its cost); a failure mid-stream: `error`, then response.failed

Every event carries `sequence_number`. The chat stream underneath is closed however this one ends, so the
request is accounted for exactly once (`streaming.to_sse`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec

from gateway.edge.responses_wire import (
    FunctionCallItem,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    response_usage,
    status_of,
)
from gateway.vocab.wire import Explanation

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


async def chat_events(chunks: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON payloads of a chat SSE stream (one `data:` event per piece; `[DONE]` ends it)."""
    buffer = b""
    async for piece in chunks:
        buffer += piece
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
                    payload = _decode(line[6:])
                    if isinstance(payload, dict):
                        yield payload


class _Item:
    """An output item being streamed: a message's text, or a function call's arguments."""

    __slots__ = ("call_id", "id", "index", "name", "text")

    def __init__(self, index: int, item_id: str, name: str | None = None, call_id: str | None = None) -> None:
        self.index, self.id, self.name, self.call_id, self.text = index, item_id, name, call_id, ""

    def done(self) -> OutputItem:
        if self.name is None:
            return OutputMessage(self.id, [OutputText(self.text)])
        return FunctionCallItem(self.id, self.call_id or self.id, self.name, self.text)


class ResponsesEvents:
    """Turns chat chunks into Responses events, numbered; one instance per stream."""

    def __init__(self, shell: ResponseObject) -> None:
        self.shell = shell
        self.seq = 0
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.calls: dict[int, _Item] = {}  # chat tool-call index -> its item
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.smr: Explanation | None = shell.smr

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"

    def start(self) -> list[bytes]:
        return [self.event("response.created", response=self.shell),
                self.event("response.in_progress", response=self.shell)]

    def _open(self, item: _Item) -> list[bytes]:
        out = self._close()
        self.items.append(item)
        self.open = item
        if item.name is None:
            added: OutputItem = OutputMessage(item.id, [], "in_progress")
        else:
            added = FunctionCallItem(item.id, item.call_id or item.id, item.name, "", "in_progress")
        out.append(self.event("response.output_item.added", output_index=item.index, item=added))
        if item.name is None:
            out.append(self.event("response.content_part.added", item_id=item.id, output_index=item.index,
                                  content_index=0, part=OutputText("")))
        return out

    def _close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        out = []
        if item.name is None:
            out.append(self.event("response.output_text.done", item_id=item.id, output_index=item.index,
                                  content_index=0, text=item.text, logprobs=[]))
            out.append(self.event("response.content_part.done", item_id=item.id, output_index=item.index,
                                  content_index=0, part=OutputText(item.text)))
        else:
            out.append(self.event("response.function_call_arguments.done", item_id=item.id, output_index=item.index,
                                  name=item.name, arguments=item.text))
        out.append(self.event("response.output_item.done", output_index=item.index, item=item.done()))
        return out

    def chunk(self, payload: dict[str, Any]) -> list[bytes]:
        """The events for one chat chunk (none for the role-only first chunk)."""
        out: list[bytes] = []
        if payload.get("smr") is not None:
            self.smr = msgspec.convert(payload["smr"], Explanation)
        if payload.get("usage") is not None:
            self.usage = payload["usage"]
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.open is None or self.open.name is not None:
                    out += self._open(_Item(len(self.items), f"msg_{self.shell.id[5:]}_{len(self.items)}"))
                assert self.open is not None
                self.open.text += text
                out.append(self.event("response.output_text.delta", item_id=self.open.id,
                                      output_index=self.open.index, content_index=0, delta=text, logprobs=[]))
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                item = self.calls.get(tc.get("index", 0))
                if item is None:
                    n = len(self.items)
                    call_id = tc.get("id") or f"call_{self.shell.id[5:]}_{n}"
                    item = self.calls[tc.get("index", 0)] = _Item(n, f"fc_{call_id}", fn.get("name") or "", call_id)
                    out += self._open(item)
                if fn.get("arguments"):
                    item.text += fn["arguments"]
                    if item is self.open:
                        out.append(self.event("response.function_call_arguments.delta", item_id=item.id,
                                              output_index=item.index, delta=fn["arguments"]))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def end(self) -> list[bytes]:
        out = self._close()
        status, details = status_of(self.finish)
        u = self.usage or {}
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        final = msgspec.structs.replace(
            self.shell, output=[i.done() for i in self.items], status=status, incomplete_details=details,
            usage=response_usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), cached) if u else None,
            smr=self.smr)
        out.append(self.event("response.completed" if status == "completed" else "response.incomplete",
                              response=final))
        return out

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        code = str(error.get("code") or error.get("type") or "server_error")
        message = str(error.get("message") or "the stream failed")
        out = [self.event("error", code=code, message=message, param=error.get("param"))]
        final = msgspec.structs.replace(self.shell, output=[i.done() for i in self.items], status="failed",
                                        error=ResponseError(code, message), smr=self.smr)
        out.append(self.event("response.failed", response=final))
        return out


async def to_response_events(chunks: AsyncIterator[bytes], shell: ResponseObject) -> AsyncIterator[bytes]:
    """The Responses event stream of one chat stream; the chat stream is closed when this one ends."""
    ev = ResponsesEvents(shell)
    events = chat_events(chunks)
    try:
        for out in ev.start():
            yield out
        async for payload in events:
            if payload.get("error") is not None:
                for out in ev.failed(payload["error"]):
                    yield out
                return
            for out in ev.chunk(payload):
                yield out
        for out in ev.end():
            yield out
    finally:
        await events.aclose()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
