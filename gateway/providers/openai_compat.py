"""Any OpenAI-compatible upstream (OpenAI, vLLM, llama.cpp server, Ollama's /v1) over one aiohttp session.

The body the client sent is forwarded as it came (fields we do not interpret included), with the
upstream model name put in, and the backend's output cap where the client set none; answers are read
as bytes and decoded once with msgspec.

Why not the openai SDK here: with the body already encoded, everything the SDK adds per request
(request options, header merging, URL parsing, the httpx2-over-aiohttp shim, response wrapping) was
about half of the gateway's CPU per request (`python -m bench.profile_gateway`). What the SDK gave is
kept: the same `POST {base_url}/chat/completions` with `Authorization: Bearer`, connect and total
timeouts, no retries (the gateway falls back along the chain instead, as it configured the SDK with
`max_retries=0`), and the same error mapping: timeout -> UpstreamTimeout, connection -> UpstreamConnectError,
HTTP >= 400 -> UpstreamHTTPError carrying the status and the upstream's `error.message`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from aiohttp.http_exceptions import HttpProcessingError

from gateway import __version__
from gateway.providers.base import Completion, StreamEvent, UpstreamCall, output_cap
from gateway.providers.openai_wire import UpstreamUsage, upstream_chunk_decoder, upstream_completion_decoder
from gateway.vocab.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.vocab.settings import Backend
from gateway.vocab.wire import Usage, encoder

OPENAI_URL = "https://api.openai.com/v1"
_NOT_FORWARDED = frozenset({"model", "stream", "stream_options"})
_error_decoder = msgspec.json.Decoder()
# An SSE line may carry a large tool call in one event; aiohttp's default line limit is 128 KiB. A line past
# twice this (4 MiB) ends the stream with an UpstreamProtocolError.
_READ_BUFSIZE = 2**21


def to_usage(u: UpstreamUsage | None) -> Usage | None:
    if u is None:
        return None
    cached = 0
    if u.prompt_tokens_details:
        cached = int(u.prompt_tokens_details.get("cached_tokens") or 0)
    return Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens or u.prompt_tokens + u.completion_tokens,
                 cached)


def error_message(body: bytes) -> str:
    """The upstream's `error.message` (OpenAI's error shape), else the start of its body."""
    try:
        data = _error_decoder.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        if isinstance(msg, str) and msg:
            return msg[:500]
    return body[:300].decode(errors="replace").strip() or "(empty body)"


def transport_error(backend: str, exc: BaseException) -> UpstreamError:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"timed out: {type(exc).__name__}", backend=backend)
    return UpstreamConnectError(f"connection failed: {type(exc).__name__}: {exc}", backend=backend)


class OpenAICompatProvider:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.url = (backend.base_url or OPENAI_URL).rstrip("/") + "/chat/completions"
        # Where the client sent no cap, the backend's goes in the field the upstream reads: OpenAI's own API
        # wants max_completion_tokens (its reasoning models refuse max_tokens); the servers that copy its API
        # (vLLM, llama.cpp, Ollama's /v1, ...) all read max_tokens.
        self.cap_field = "max_completion_tokens" if self.url.startswith(OPENAI_URL) else "max_tokens"
        self.headers = {"Authorization": f"Bearer {backend.api_key or 'no-key'}",
                        "Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": f"smart-model-router/{__version__}"}
        t = backend.timeouts
        self.timeout = aiohttp.ClientTimeout(total=t.total_s, sock_connect=t.connect_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Opened on first use, on the running loop; one connection pool per backend."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0), timeout=self.timeout,
                headers=self.headers, read_bufsize=_READ_BUFSIZE, auto_decompress=True)
        return self._session

    def unavailable_reason(self) -> str | None:
        if not self.backend.api_key and not self.backend.base_url:
            return f"{self.backend.api_key_env or 'OPENAI_API_KEY'} is not set"
        return None

    def _body(self, call: UpstreamCall, stream: bool) -> bytes:
        """The client's body as sent, with the upstream model; encoded once, straight to bytes."""
        body: dict[str, Any] = {k: v for k, v in call.raw.items() if k not in _NOT_FORWARDED}
        body["model"] = self.backend.model
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body[self.cap_field] = output_cap(call.request, self.backend)
        if stream:
            # Always ask for usage: the gateway accounts for every stream. It is dropped again
            # for clients that did not ask for it.
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return encoder.encode(body)

    async def _status_error(self, response: aiohttp.ClientResponse) -> UpstreamHTTPError:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        return UpstreamHTTPError(f"HTTP {response.status}: {error_message(body)}", backend=self.backend.name,
                                 upstream_status=response.status)

    async def complete(self, call: UpstreamCall) -> Completion:
        name = self.backend.name
        try:
            async with self._client().post(self.url, data=self._body(call, stream=False)) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error(name, exc) from None
        try:
            answer = upstream_completion_decoder.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamProtocolError(f"unreadable answer: {exc}", backend=name) from None
        if not answer.choices:
            raise UpstreamProtocolError("answer has no choices", backend=name)
        choice = answer.choices[0]
        usage = to_usage(answer.usage) or Usage(estimated=True)
        return Completion(choice.message, choice.finish_reason, usage)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[StreamEvent]:
        name = self.backend.name
        try:
            async with self._client().post(self.url, data=self._body(call, stream=True)) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
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
        except HttpProcessingError as exc:  # LineTooLong: an SSE line past the reader's limit
            raise UpstreamProtocolError(f"unreadable stream: {exc.message.split(' when reading')[0]}",
                                        backend=name) from None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            if isinstance(exc, aiohttp.ClientPayloadError):
                raise UpstreamConnectError(f"stream broke: {exc}", backend=name) from None
            raise transport_error(name, exc) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            # Let the connector's transports finish closing before the loop goes (aiohttp's advice).
            await asyncio.sleep(0)
