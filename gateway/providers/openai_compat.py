"""Any OpenAI-compatible upstream (OpenAI, vLLM, llama.cpp server, Ollama's /v1) via the openai SDK.

The body the client sent is forwarded as it came (fields we do not interpret included), with the
upstream model name put in. Responses are read as raw bytes and decoded once with msgspec.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import msgspec
import openai

from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.providers.base import Completion, StreamEvent, UpstreamCall
from gateway.settings import Backend
from gateway.wire import (
    UpstreamUsage,
    Usage,
    encoder,
    upstream_chunk_decoder,
    upstream_completion_decoder,
)

OPENAI_URL = "https://api.openai.com/v1"
_NOT_FORWARDED = frozenset({"model", "stream", "stream_options"})
_JSON = {"Content-Type": "application/json"}
# What the SDK's own `with_streaming_response` sets: hand back the open response, unread.
_STREAMED = {**_JSON, "X-Stainless-Raw-Response": "stream"}


def to_usage(u: UpstreamUsage | None) -> Usage | None:
    if u is None:
        return None
    cached = 0
    if u.prompt_tokens_details:
        cached = int(u.prompt_tokens_details.get("cached_tokens") or 0)
    return Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens or u.prompt_tokens + u.completion_tokens,
                 cached)


def _error(backend: str, exc: Exception) -> UpstreamError:
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout(f"timed out: {exc}", backend=backend)
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamConnectError(f"connection failed: {exc}", backend=backend)
    if isinstance(exc, openai.APIStatusError):
        return UpstreamHTTPError(f"HTTP {exc.status_code}: {exc.message}", backend=backend,
                                 upstream_status=exc.status_code)
    return UpstreamProtocolError(f"{type(exc).__name__}: {exc}", backend=backend)


class OpenAICompatProvider:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        t = backend.timeouts
        timeout = httpx2.Timeout(t.total_s, connect=t.connect_s)
        self._client = openai.AsyncOpenAI(
            base_url=backend.base_url or OPENAI_URL,
            api_key=backend.api_key or "no-key",
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )

    def unavailable_reason(self) -> str | None:
        if not self.backend.api_key and not self.backend.base_url:
            return f"{self.backend.api_key_env or 'OPENAI_API_KEY'} is not set"
        return None

    def _body(self, call: UpstreamCall, stream: bool) -> bytes:
        """The client's body as sent, with the upstream model; encoded once, straight to bytes.

        The SDK's typed `create()` re-walks every message through its TypedDict transforms (about
        1.5 ms a request here); `post()` with ready bytes keeps its auth, errors and timeouts without that.
        """
        body: dict[str, Any] = {k: v for k, v in call.raw.items() if k not in _NOT_FORWARDED}
        body["model"] = self.backend.model
        if stream:
            # Always ask for usage: the gateway accounts for every stream. It is dropped again
            # for clients that did not ask for it.
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return encoder.encode(body)

    async def complete(self, call: UpstreamCall) -> Completion:
        try:
            response = await self._client.post(
                "/chat/completions", cast_to=httpx2.Response, content=self._body(call, stream=False),
                options={"headers": _JSON})
            content = response.content
        except openai.OpenAIError as exc:
            raise _error(self.backend.name, exc) from None
        try:
            answer = upstream_completion_decoder.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamProtocolError(f"unreadable answer: {exc}", backend=self.backend.name) from None
        if not answer.choices:
            raise UpstreamProtocolError("answer has no choices", backend=self.backend.name)
        choice = answer.choices[0]
        usage = to_usage(answer.usage) or Usage(estimated=True)
        return Completion(choice.message, choice.finish_reason, usage)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]:
        name = self.backend.name
        try:
            response = await self._client.post(
                "/chat/completions", cast_to=httpx2.Response, content=self._body(call, stream=True),
                options={"headers": _STREAMED})
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = upstream_chunk_decoder.decode(data)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        raise UpstreamProtocolError(f"unreadable stream chunk: {exc}", backend=name) from None
                    if chunk.error is not None:
                        raise UpstreamHTTPError(f"stream error: {chunk.error.get('message', chunk.error)}",
                                                backend=name)
                    usage = to_usage(chunk.usage)
                    if not chunk.choices:
                        if usage is not None:
                            yield StreamEvent(usage=usage)
                        continue
                    c = chunk.choices[0]
                    yield StreamEvent(delta=c.delta, finish_reason=c.finish_reason, usage=usage)
            finally:
                await response.aclose()
        except openai.OpenAIError as exc:
            raise _error(name, exc) from None
        except httpx2.TransportError as exc:
            raise UpstreamConnectError(f"stream broke: {exc}", backend=name) from None

    async def aclose(self) -> None:
        await self._client.close()
