"""Ollama's native /api/chat through the `ollama` AsyncClient (NDJSON streaming)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama

from gateway.providers.base import Completion, StreamEvent, UpstreamCall, output_cap, tool_call_event
from gateway.vocab.errors import (
    InvalidRequest,
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.vocab.settings import Backend
from gateway.vocab.wire import (
    ChatCompletionRequest,
    Delta,
    FunctionCall,
    ImagePart,
    ResponseMessage,
    TextPart,
    ToolCall,
    Usage,
)


def _image_b64(url: str) -> str:
    if url.startswith("data:") and ";base64," in url:
        return url.split(";base64,", 1)[1]
    raise InvalidRequest("Ollama accepts images only as base64 data URLs", param="messages",
                         code="unsupported_value")


def to_ollama_messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for m in req.messages:
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role}
        if isinstance(m.content, list):
            msg["content"] = "\n".join(p.text for p in m.content if isinstance(p, TextPart))
            images = [_image_b64(p.image_url.url) for p in m.content if isinstance(p, ImagePart)]
            if images:
                msg["images"] = images
        else:
            msg["content"] = m.content or ""
        if m.tool_calls:
            calls = []
            for tc in m.tool_calls:
                tool_names[tc.id] = tc.function.name
                try:
                    args = json.loads(tc.function.arguments or "{}")
                except json.JSONDecodeError:
                    raise InvalidRequest(f"tool call {tc.id} has arguments that are not JSON",
                                         param="messages", code="invalid_value") from None
                calls.append({"function": {"name": tc.function.name, "arguments": args}})
            msg["tool_calls"] = calls
        if m.role == "tool" and m.tool_call_id in tool_names:
            msg["tool_name"] = tool_names[m.tool_call_id]
        out.append(msg)
    return out


def to_ollama_options(req: ChatCompletionRequest, num_predict: int) -> dict[str, Any]:
    """Sampling options; `num_predict` always (Ollama's default, -1, generates until the model stops)."""
    opts: dict[str, Any] = {"num_predict": num_predict}
    if req.temperature is not None:
        opts["temperature"] = req.temperature
    if req.top_p is not None:
        opts["top_p"] = req.top_p
    if req.stop is not None:
        opts["stop"] = [req.stop] if isinstance(req.stop, str) else req.stop
    if req.seed is not None:
        opts["seed"] = req.seed
    if req.presence_penalty is not None:
        opts["presence_penalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        opts["frequency_penalty"] = req.frequency_penalty
    return opts


def to_ollama_format(req: ChatCompletionRequest) -> Any:
    rf = req.response_format
    if not rf:
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema") or "json"
    return None


def _tool_calls(calls: Any, start: int = 0) -> list[ToolCall]:
    return [
        ToolCall(id=f"call_{start + i}_{c.function.name}",
                 function=FunctionCall(c.function.name, json.dumps(dict(c.function.arguments or {}))))
        for i, c in enumerate(calls or [])
    ]


def _finish(done_reason: str | None, has_tools: bool) -> str:
    if has_tools:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _error(backend: str, exc: Exception) -> UpstreamError:
    if isinstance(exc, ollama.ResponseError):
        return UpstreamHTTPError(f"HTTP {exc.status_code}: {exc.error}", backend=backend,
                                 upstream_status=exc.status_code if exc.status_code > 0 else None)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"timed out: {type(exc).__name__}", backend=backend)
    if isinstance(exc, ConnectionError | httpx.ConnectError):
        return UpstreamConnectError(f"connection failed: {exc}", backend=backend)
    if isinstance(exc, httpx.TransportError):
        return UpstreamConnectError(f"transport error: {type(exc).__name__}: {exc}", backend=backend)
    return UpstreamProtocolError(f"{type(exc).__name__}: {exc}", backend=backend)


_ERRORS = (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError)


class OllamaProvider:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        t = backend.timeouts
        # httpx's default pool holds 100 connections: the 101st concurrent call waited for one to free up.
        # A local Ollama serves as many as it can; the gateway does not queue in front of it.
        self._client = ollama.AsyncClient(host=backend.base_url, timeout=httpx.Timeout(t.total_s, connect=t.connect_s),
                                          limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))

    def unavailable_reason(self) -> str | None:
        return None if self.backend.base_url else "OLLAMA_BASE_URL is not set"

    def _kwargs(self, call: UpstreamCall) -> dict[str, Any]:
        req = call.request
        kw: dict[str, Any] = {
            "model": self.backend.model,
            "messages": to_ollama_messages(req),
            "options": to_ollama_options(req, output_cap(req, self.backend)),
            "format": to_ollama_format(req),
        }
        if req.tools:
            kw["tools"] = [{"type": "function", "function": {
                "name": t.function.name, "description": t.function.description or "",
                "parameters": t.function.parameters or {"type": "object", "properties": {}},
            }} for t in req.tools]
        return kw

    async def complete(self, call: UpstreamCall) -> Completion:
        try:
            r = await self._client.chat(stream=False, **self._kwargs(call))
        except _ERRORS as exc:
            raise _error(self.backend.name, exc) from None
        calls = _tool_calls(r.message.tool_calls)
        msg = ResponseMessage(content=r.message.content or ("" if not calls else None), tool_calls=calls or None)
        p, c = r.prompt_eval_count, r.eval_count
        usage = Usage(p or 0, c or 0, (p or 0) + (c or 0), estimated=p is None or c is None)
        return Completion(msg, _finish(r.done_reason, bool(calls)), usage)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]:
        n_calls = 0
        try:
            async for part in await self._client.chat(stream=True, **self._kwargs(call)):
                calls = _tool_calls(part.message.tool_calls, n_calls)
                if calls:
                    yield tool_call_event(calls, n_calls)
                    n_calls += len(calls)
                if part.message.content:
                    yield StreamEvent(delta=Delta(content=part.message.content))
                if part.done:
                    p, c = part.prompt_eval_count, part.eval_count
                    usage = Usage(p or 0, c or 0, (p or 0) + (c or 0), estimated=p is None or c is None)
                    yield StreamEvent(finish_reason=_finish(part.done_reason, n_calls > 0), usage=usage)
                    return
        except _ERRORS as exc:
            raise _error(self.backend.name, exc) from None
        raise UpstreamProtocolError("stream ended without a done line", backend=self.backend.name)

    async def aclose(self) -> None:
        await self._client._client.aclose()
