"""Cascade checks, pure: is a cheap tier's answer good enough to send, or should the next tier answer?

`fails(request, message, finish_reason, backend)` names the first failure of:

    empty        no text and no tool call
    refusal      the model declined (OpenAI's `refusal` field, or a refusal opening the answer)
    length       cut by a length limit the client did not ask for (the backend's own cap)
    json         response_format asks for JSON and the answer does not parse (or fit its json_schema)
    tool_schema  a tool call names an unknown tool, or its arguments do not fit the tool's parameters

or None for an answer that passes. Deliberately narrow: a check that fires on good answers costs a
second call every time.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from gateway.vocab.settings import Backend
from gateway.vocab.wire import ChatCompletionRequest, ResponseMessage

CHECKS = ("empty", "refusal", "length", "json", "tool_schema")

# A refusal opens the answer; the same words later on ("I can't stress enough ...") are not one.
_REFUSAL = re.compile(
    r"^\W*(?:"
    r"(?:I'?m|I am)\s+(?:very\s+|so\s+|truly\s+)?sorry,?\s+(?:but\s+)?I\s+(?:can(?:no|')?t|cannot|am unable|'m unable|"
    r"won'?t|am not able)"
    r"|I\s+(?:can(?:no|')?t|cannot|won'?t|am unable to|'m unable to|am not able to)\s+"
    r"(?:help|assist|answer|provide|comply|do that|fulfil|fulfill|support|engage)"
    r"|As an AI(?: language model)?,? I\s+(?:can(?:no|')?t|cannot|am unable|don'?t)"
    r")",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text[:300]))


def _schema_problem(instance: Any, schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    try:
        error = next(iter(Draft202012Validator(schema).iter_errors(instance)), None)
    except SchemaError:
        return None  # the client's schema itself is broken: nothing to hold the answer to
    return None if error is None else error.message[:200]


def _json_failure(req: ChatCompletionRequest, text: str) -> str | None:
    fmt = req.response_format or {}
    kind = fmt.get("type")
    if kind not in ("json_object", "json_schema"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return "json: the answer is not valid JSON"
    if kind == "json_object" and not isinstance(value, dict):
        return "json: the answer is not a JSON object"
    spec = fmt.get("json_schema")
    problem = _schema_problem(value, spec.get("schema")) if isinstance(spec, dict) else None
    return f"json: the answer does not fit the schema: {problem}" if problem else None


def _tool_failure(req: ChatCompletionRequest, message: ResponseMessage) -> str | None:
    tools = {t.function.name: t.function.parameters for t in req.tools or []}
    for call in message.tool_calls or []:
        name = call.function.name
        if name not in tools:
            return f"tool_schema: unknown tool {name[:64]!r}"
        try:
            args = json.loads(call.function.arguments or "{}")
        except ValueError:
            return f"tool_schema: {name} arguments are not valid JSON"
        if not isinstance(args, dict):
            return f"tool_schema: {name} arguments are not a JSON object"
        problem = _schema_problem(args, tools[name])
        if problem:
            return f"tool_schema: {name} arguments: {problem}"
    return None


def fails(req: ChatCompletionRequest, message: ResponseMessage, finish_reason: str | None,
          backend: Backend) -> str | None:
    """Why this answer should go to the next tier, or None when it can be sent as it is."""
    text = message.content or ""
    if message.refusal:
        return "refusal"
    if not text.strip() and not message.tool_calls:
        return "empty"
    if text and is_refusal(text):
        return "refusal"
    asked = req.output_limit
    if finish_reason == "length" and (asked is None or backend.max_output_tokens < asked):
        return "length"  # a limit the client set would cut the next tier's answer too
    if not message.tool_calls:
        failure = _json_failure(req, text)
        if failure:
            return failure
    return _tool_failure(req, message) if message.tool_calls else None
