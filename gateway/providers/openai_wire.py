"""What OpenAI-compatible upstreams answer, as the `openai` adapter decodes it (lenient: defaults for what
an upstream leaves out)."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.vocab.wire import Delta, ResponseMessage


class UpstreamUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None


class UpstreamChoice(msgspec.Struct, frozen=True):
    message: ResponseMessage
    index: int = 0
    finish_reason: str | None = None


class UpstreamCompletion(msgspec.Struct, frozen=True):
    choices: list[UpstreamChoice]
    id: str = ""
    model: str = ""
    created: int = 0
    usage: UpstreamUsage | None = None
    system_fingerprint: str | None = None


class UpstreamChunkChoice(msgspec.Struct, frozen=True):
    delta: Delta = Delta()
    index: int = 0
    finish_reason: str | None = None


class UpstreamChunk(msgspec.Struct, frozen=True):
    choices: list[UpstreamChunkChoice] = []
    usage: UpstreamUsage | None = None
    error: dict[str, Any] | None = None


upstream_completion_decoder = msgspec.json.Decoder(UpstreamCompletion)
upstream_chunk_decoder = msgspec.json.Decoder(UpstreamChunk)
