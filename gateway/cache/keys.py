"""Pure functions: what makes two requests the same (exact cache) or the same context (semantic cache)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from gateway.vocab.wire import ChatCompletionRequest, message_text

# Request fields that change the answer, besides the messages, taken from the validated request (so 0
# and 0.0 give one key). Every other field the client sent is in the key too, as sent (`logprobs`,
# `reasoning_effort`, ...: forwarded upstream, so they may change the answer), except these, which cannot.
_ANSWER_FIELDS = ("tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens",
                  "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "n")
_NOT_IN_KEY = frozenset({"messages", "model", "stream", "stream_options", "user", *_ANSWER_FIELDS})
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _digest(obj: Any) -> str:
    return hashlib.sha256(_encode_sorted(obj)).hexdigest()


def tenant_tag(tenant: str) -> str:
    """A tenant's namespace: hex only, so it needs no escaping in keys or TAG queries."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def route_key(model: str | None, force_tier: str | None, default_model: str) -> str:
    """What the client asked to be routed to. `auto` is deterministic for a given prompt, so the
    requested route is part of the key and an exact hit needs no classifier."""
    if force_tier:
        return f"tier:{force_tier.strip().lower()}"
    return f"model:{model or default_model}"


def _params(req: ChatCompletionRequest, route: str, raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"route": route}
    for f in _ANSWER_FIELDS:
        v = getattr(req, f)
        if v is not None:
            out[f] = msgspec.to_builtins(v)
    extra = {k: v for k, v in raw.items() if k not in _NOT_IN_KEY}
    if extra:
        out["extra"] = extra
    return out


def last_user_index(req: ChatCompletionRequest) -> int:
    for i in range(len(req.messages) - 1, -1, -1):
        if req.messages[i].role == "user":
            return i
    return -1


def last_user_text(req: ChatCompletionRequest) -> str:
    i = last_user_index(req)
    return message_text(req.messages[i]) if i >= 0 else ""


def cache_keys(req: ChatCompletionRequest, route: str, raw: dict[str, Any] | None = None) -> tuple[str, str]:
    """(exact key, semantic scope). The exact key covers the whole request; the scope covers
    everything but the last user message: system prompt, earlier turns, sampling, route.
    Messages and parameters are turned into builtins once for both."""
    messages = msgspec.to_builtins(req.messages)
    params = _params(req, route, raw or {})
    i = last_user_index(req)
    context = [m for j, m in enumerate(messages) if j != i]
    return (_digest({"messages": messages, **params}),
            _digest({"context": context, "turn_position": i, **params})[:32])
