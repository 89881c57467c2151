"""Gemini through the google-genai async client (generateContent, streamGenerateContent over SSE).

system/developer messages -> system_instruction, assistant -> model role, tool calls <-> function
calls, tool results -> function responses, usageMetadata -> usage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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
    Message,
    ResponseMessage,
    TextPart,
    ToolCall,
    Usage,
    message_text,
)

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter"}


def _parts(m: Message) -> list[dict[str, Any]]:
    if m.content is None:
        return []
    if isinstance(m.content, str):
        return [{"text": m.content}] if m.content else []
    parts: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            parts.append({"text": p.text})
        elif isinstance(p, ImagePart):
            url = p.image_url.url
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inline_data": {"mime_type": mime, "data": base64.b64decode(data)}})
            else:
                parts.append({"file_data": {"file_uri": url, "mime_type": "image/*"}})
    return parts


def _args(text: str, call_id: str) -> dict[str, Any]:
    try:
        args = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest(f"tool call {call_id} has arguments that are not JSON", param="messages",
                             code="invalid_value") from None
    return args if isinstance(args, dict) else {"value": args}


def to_gemini_contents(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], str | None]:
    contents: list[dict[str, Any]] = []
    system: list[str] = []
    tool_names: dict[str, str] = {}
    for m in req.messages:
        if m.role in ("system", "developer"):
            system.append(message_text(m))
            continue
        if m.role in ("tool", "function"):
            name = tool_names.get(m.tool_call_id or "", m.name or "tool")
            text = message_text(m)
            try:
                result = json.loads(text)
            except json.JSONDecodeError:
                result = text
            response = result if isinstance(result, dict) else {"result": result}
            part = {"function_response": {"name": name, "response": response}}
            if contents and contents[-1]["role"] == "user" and "function_response" in contents[-1]["parts"][0]:
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            continue
        parts = _parts(m)
        if m.role == "assistant":
            for tc in m.tool_calls or []:
                tool_names[tc.id] = tc.function.name
                parts.append({"function_call": {"name": tc.function.name, "args": _args(tc.function.arguments, tc.id)}})
        if parts:
            contents.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
    return contents, ("\n\n".join(system) if system else None)


def to_gemini_config(req: ChatCompletionRequest, system: str | None, max_output_tokens: int) -> dict[str, Any]:
    """generationConfig and the rest; `max_output_tokens` always (Gemini's own default may exceed what a
    budget held; thinking tokens count against it too)."""
    cfg: dict[str, Any] = {"max_output_tokens": max_output_tokens}
    if system:
        cfg["system_instruction"] = system
    if req.temperature is not None:
        cfg["temperature"] = req.temperature
    if req.top_p is not None:
        cfg["top_p"] = req.top_p
    if req.stop is not None:
        cfg["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else req.stop
    if req.seed is not None:
        cfg["seed"] = req.seed
    if req.presence_penalty is not None:
        cfg["presence_penalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        cfg["frequency_penalty"] = req.frequency_penalty
    rf = req.response_format or {}
    if rf.get("type") == "json_object":
        cfg["response_mime_type"] = "application/json"
    elif rf.get("type") == "json_schema":
        cfg["response_mime_type"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if schema:
            cfg["response_json_schema"] = schema
    if req.tools:
        cfg["tools"] = [{"function_declarations": [
            {"name": t.function.name, "description": t.function.description or "",
             "parameters_json_schema": t.function.parameters or {"type": "object", "properties": {}}}
            for t in req.tools]}]
        cfg["automatic_function_calling"] = {"disable": True}
    tc = req.tool_choice
    if tc is not None:
        if tc == "none":
            cfg["tool_config"] = {"function_calling_config": {"mode": "NONE"}}
        elif tc == "required":
            cfg["tool_config"] = {"function_calling_config": {"mode": "ANY"}}
        elif isinstance(tc, dict):
            name = (tc.get("function") or {}).get("name")
            cfg["tool_config"] = {"function_calling_config": {"mode": "ANY", "allowed_function_names": [name]}}
    return cfg


def _usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage(estimated=True)
    # Tool-use prompt tokens (what built-in tools read) are billed as input; thoughts as output.
    p = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    c = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(p, c, p + c, meta.cached_content_token_count or 0)


def _split(resp: types.GenerateContentResponse, call_offset: int = 0) -> tuple[str, list[ToolCall], str | None]:
    """Text, tool calls and finish reason of the first candidate."""
    if not resp.candidates:
        return "", [], None
    cand = resp.candidates[0]
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in (cand.content.parts if cand.content and cand.content.parts else []):
        if part.thought:
            continue
        if part.text:
            texts.append(part.text)
        if part.function_call is not None:
            fc = part.function_call
            name = fc.name or "function"
            calls.append(ToolCall(id=fc.id or f"call_{call_offset + len(calls)}_{name}",
                                  function=FunctionCall(name, json.dumps(fc.args or {}))))
    finish = None
    if cand.finish_reason is not None:
        reason = cand.finish_reason.value if hasattr(cand.finish_reason, "value") else str(cand.finish_reason)
        finish = _FINISH.get(reason, "stop")
    return "".join(texts), calls, finish


def _error(backend: str, exc: Exception) -> UpstreamError:
    if isinstance(exc, genai_errors.APIError):
        return UpstreamHTTPError(f"HTTP {exc.code}: {exc.message or exc.status}", backend=backend,
                                 upstream_status=exc.code)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return UpstreamTimeout("timed out", backend=backend)
    if isinstance(exc, httpx.TransportError):
        return UpstreamConnectError(f"connection failed: {type(exc).__name__}: {exc}", backend=backend)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError | ConnectionError):
        return UpstreamConnectError(f"connection failed: {exc}", backend=backend)
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamConnectError(f"transport error: {type(exc).__name__}: {exc}", backend=backend)
    return UpstreamProtocolError(f"{type(exc).__name__}: {exc}", backend=backend)


# HttpProcessingError: aiohttp's reader refused the stream (a line past its limit: LineTooLong).
_ERRORS = (genai_errors.APIError, aiohttp.ClientError, HttpProcessingError, httpx.HTTPError, TimeoutError,
           ConnectionError, ValueError)
# The SDK turns each message into pydantic models and back (~0.16 ms a message on this CPU). Past this many
# messages that runs on a worker thread (the SDK's sync client), so one huge request does not stall the
# event loop for every other request (a 100,000-message body held it for 16 s).
OFF_LOOP_MESSAGES = 128
_END = object()


class GeminiProvider:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        options = types.HttpOptions(api_version="v1beta", timeout=int(backend.timeouts.total_s * 1000),
                                    base_url=backend.base_url)
        self._client: genai.Client | None = (
            genai.Client(api_key=backend.api_key, http_options=options) if backend.api_key else None
        )

    def unavailable_reason(self) -> str | None:
        if self._client is None:
            return f"{self.backend.api_key_env or 'GOOGLE_API_KEY'} is not set"
        return None

    def _request(self, call: UpstreamCall) -> dict[str, Any]:
        contents, system = to_gemini_contents(call.request)
        if not contents:
            raise InvalidRequest("Gemini needs at least one user or assistant message", param="messages")
        return {"model": self.backend.model, "contents": contents,
                "config": to_gemini_config(call.request, system, output_cap(call.request, self.backend))}

    def _off_loop(self, call: UpstreamCall) -> bool:
        return len(call.request.messages) > OFF_LOOP_MESSAGES

    async def complete(self, call: UpstreamCall) -> Completion:
        client = self._client
        assert client is not None
        try:
            if self._off_loop(call):
                resp = await asyncio.to_thread(lambda: client.models.generate_content(**self._request(call)))
            else:
                resp = await client.aio.models.generate_content(**self._request(call))
        except _ERRORS as exc:
            raise _error(self.backend.name, exc) from None
        if not resp.candidates:
            raise UpstreamProtocolError("answer has no candidates", backend=self.backend.name)
        text, calls, finish = _split(resp)
        msg = ResponseMessage(content=text if text or not calls else None, tool_calls=calls or None)
        return Completion(msg, "tool_calls" if calls else (finish or "stop"), _usage(resp.usage_metadata))

    async def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]:
        assert self._client is not None
        n_calls = 0
        finish: str | None = None
        usage: Usage | None = None
        responses = (self._threaded_stream(call) if self._off_loop(call)
                     else await self._client.aio.models.generate_content_stream(**self._request(call)))
        try:
            async for resp in responses:
                text, calls, fin = _split(resp, n_calls)
                if calls:
                    yield tool_call_event(calls, n_calls)
                    n_calls += len(calls)
                if text:
                    yield StreamEvent(delta=Delta(content=text))
                finish = fin or finish
                if resp.usage_metadata is not None:
                    usage = _usage(resp.usage_metadata)
        except _ERRORS as exc:
            raise _error(self.backend.name, exc) from None
        if finish is None:
            raise UpstreamProtocolError("stream ended without a finish reason", backend=self.backend.name)
        yield StreamEvent(finish_reason="tool_calls" if n_calls else finish, usage=usage or Usage(estimated=True))

    async def _threaded_stream(self, call: UpstreamCall) -> AsyncIterator[types.GenerateContentResponse]:
        """The SDK's sync stream on a worker thread, each event handed to the loop as it arrives."""
        client = self._client
        assert client is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def hand(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                for resp in client.models.generate_content_stream(**self._request(call)):
                    if stop.is_set():
                        return
                    hand(resp)
                hand(_END)
            except BaseException as exc:
                hand(exc)

        worker = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, types.GenerateContentResponse)
                yield item
        finally:
            stop.set()
            worker.add_done_callback(lambda f: f.exception())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
