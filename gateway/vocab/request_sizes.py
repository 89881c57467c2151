"""How much one chat request may carry: messages and content parts (`server.max_messages`,
`server.max_content_parts`) and tools (128, the OpenAI API's own limit). Checked on the decoded body before
any work on it; past a cap the request is a 400 that names the limit, as OpenAI words it."""

from __future__ import annotations

from typing import Any

from gateway.vocab.errors import InvalidRequest

MAX_TOOLS = 128  # the OpenAI API's own limit on `tools`


def _too_long(param: str, got: int, limit: int, setting: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': array too long. Expected an array with maximum length {limit}{setting}, "
                          f"but got an array with length {got} instead.", param=param, code="array_above_max_length")


def check_sizes(raw: dict[str, Any], max_messages: int | None, max_content_parts: int | None) -> None:
    """Refuse, before any work on them, more messages, content parts or tools than the gateway takes."""
    messages = raw.get("messages")
    if isinstance(messages, list):
        if max_messages is not None and len(messages) > max_messages:
            raise _too_long("messages", len(messages), max_messages, " (server.max_messages)")
        if max_content_parts is not None:
            parts = sum(len(c) for m in messages if isinstance(m, dict) and isinstance(c := m.get("content"), list))
            if parts > max_content_parts:
                raise InvalidRequest(f"Invalid 'messages': too many content parts ({parts}, all messages together); "
                                     f"the most this gateway takes is {max_content_parts} (server.max_content_parts)",
                                     param="messages", code="array_above_max_length")
    tools = raw.get("tools")
    if isinstance(tools, list) and len(tools) > MAX_TOOLS:
        raise _too_long("tools", len(tools), MAX_TOOLS, "")
