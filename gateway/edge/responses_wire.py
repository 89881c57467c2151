"""OpenAI's Responses API (`POST /v1/responses`) at the edge: its request and response Structs, and the
translation of a request into the chat request the request path serves.

The gateway serves the stateless form: nothing is stored, so `store: true`, `previous_response_id` and the
other fields that need a stored response or a hosted tool are refused with a 400 naming them. Every other
field is honoured through its chat equivalent (`instructions` -> a system message, `text.format` ->
`response_format`, `max_output_tokens` -> `max_completion_tokens`, function tools and items -> chat tools,
assistant `tool_calls` and `tool` messages). A field this module does not know is refused, not dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.vocab.errors import InvalidRequest
from gateway.vocab.request_sizes import check_sizes
from gateway.vocab.wire import (
    ChatCompletionRequest,
    Explanation,
    ModelName,
    Temperature,
    TokenLimit,
    TopP,
    decode_json_object,
    validation_error,
)

# ---------------------------------------------------------------- request
# OpenAI's bounds: at most 16 pairs, keys of at most 64 characters, values of at most 512.
Metadata = Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=512)]],
                     msgspec.Meta(max_length=16)]


class FormatConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    format: FormatConfig | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """The fields `POST /v1/responses` serves. `input` items are messages (roles user, assistant, system,
    developer; parts input_text, input_image, input_file, output_text, refusal), function_call and
    function_call_output items."""

    input: str | list[dict[str, Any]]
    model: ModelName | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = None
    store: bool | None = None
    metadata: Metadata | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    stream_options: dict[str, Any] | None = None


# Fields of OpenAI's schema that need what a stateless gateway does not keep, or a hosted feature.
REFUSED = {
    "previous_response_id": "no response is stored by this gateway; send the whole conversation as `input`",
    "conversation": "no conversation is stored by this gateway; send the whole conversation as `input`",
    "background": "background responses need a stored response; this gateway serves them in the request",
    "background_options": "background responses are not served by this gateway",
    "prompt": "stored prompt templates are not kept by this gateway; send `instructions` and `input`",
    "max_tool_calls": "hosted tools are not run by this gateway",
    "top_logprobs": "log probabilities are not returned by this gateway",
    "context_management": "context management needs stored state this gateway does not keep",
    "prompt_cache_options": "prompt cache options are not served by this gateway",
    "prompt_cache_retention": "prompt cache retention is not served by this gateway",
    "moderation": "moderation is not served by this gateway",
    "access_programs": "programmatic tool calling is not served by this gateway",
    "image": "image generation is not served by this gateway",
}
KNOWN = frozenset(ResponsesRequest.__struct_fields__)
ROLES = frozenset({"user", "assistant", "system", "developer"})


def _refuse(message: str, param: str, code: str = "unsupported_parameter") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _empty(value: object) -> bool:  # a refused field sent as null, false or empty asks for nothing
    return value is None or value is False or value == [] or value == {}


class ParsedResponses(msgspec.Struct, frozen=True):
    request: ResponsesRequest
    chat: ChatCompletionRequest
    chat_raw: dict[str, Any]  # the chat body OpenAI-compatible upstreams get


def parse_responses_request(body: bytes, *, max_messages: int | None = None,
                            max_content_parts: int | None = None) -> ParsedResponses:
    """A Responses request, validated and translated; every problem is a 400 naming its field."""
    raw = decode_json_object(body)
    for name, value in raw.items():
        if name in REFUSED and not _empty(value):
            raise _refuse(f"'{name}' is not supported: {REFUSED[name]}", name)
        if name not in KNOWN and name not in REFUSED:
            raise _refuse(f"Unsupported parameter: '{name}' is not served by this gateway's /v1/responses", name)
    try:
        req = msgspec.convert({k: v for k, v in raw.items() if k in KNOWN}, ResponsesRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply", code="invalid_json") from None
    if req.store:
        raise _refuse("'store': true is not supported: this gateway keeps no responses; send 'store': false "
                      "(an absent 'store' is served as not stored)", "store", "unsupported_value")
    if req.include:
        raise _refuse(f"'include' is not supported: {', '.join(req.include)}", "include", "unsupported_value")
    if req.truncation == "auto":
        raise _refuse("'truncation': 'auto' is not supported (use 'disabled')", "truncation", "unsupported_value")
    if req.reasoning is not None and (req.reasoning.summary or req.reasoning.generate_summary):
        raise _refuse("'reasoning.summary' is not supported", "reasoning.summary", "unsupported_value")
    chat_raw = to_chat(req)
    check_sizes(chat_raw, max_messages, max_content_parts)
    try:
        chat = msgspec.convert(chat_raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    return ParsedResponses(req, chat, chat_raw)


# ---------------------------------------------------------------- request -> chat
def to_chat(req: ResponsesRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        messages.append({"role": "user", "content": req.input})
    else:
        for i, item in enumerate(req.input):
            _add_item(messages, item, f"input[{i}]")
    if not messages:
        raise InvalidRequest("'input' must contain at least one item", param="input", code="invalid_value")
    chat: dict[str, Any] = {"messages": messages}
    if req.model is not None:
        chat["model"] = req.model
    if req.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the usage and cost of response.completed
    for name, value in (("temperature", req.temperature), ("top_p", req.top_p),
                        ("max_completion_tokens", req.max_output_tokens), ("user", req.user),
                        ("parallel_tool_calls", req.parallel_tool_calls), ("safety_identifier", req.safety_identifier),
                        ("prompt_cache_key", req.prompt_cache_key), ("service_tier", req.service_tier)):
        if value is not None:
            chat[name] = value
    if req.reasoning is not None and req.reasoning.effort is not None:
        chat["reasoning_effort"] = req.reasoning.effort
    if req.tools:
        chat["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(req.tool_choice)
    if req.text is not None:
        if req.text.verbosity is not None:
            chat["verbosity"] = req.text.verbosity
        fmt = req.text.format
        if fmt is not None and fmt.type == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            if not fmt.name or fmt.schema is None:
                raise InvalidRequest("'text.format' of type json_schema needs 'name' and 'schema'",
                                     param="text.format", code="missing_required_parameter")
            spec = {"name": fmt.name, "schema": fmt.schema, "description": fmt.description, "strict": fmt.strict}
            chat["response_format"] = {"type": "json_schema",
                                       "json_schema": {k: v for k, v in spec.items() if v is not None}}
    return chat


def _text(value: object, param: str) -> str:
    if isinstance(value, str):
        return value
    raise InvalidRequest(f"'{param}' must be a string", param=param, code="invalid_type")


def _part(part: object, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{param}' must be an object", param=param, code="invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": _text(part.get("text"), f"{param}.text")}
    if kind == "refusal":
        return {"type": "refusal", "refusal": _text(part.get("refusal"), f"{param}.refusal")}
    if kind == "input_image":
        if part.get("file_id"):
            raise _refuse("'file_id' images are not supported: send 'image_url' (a URL or a data URL)",
                          f"{param}.file_id")
        image = {"url": _text(part.get("image_url"), f"{param}.image_url")}
        if part.get("detail") is not None:
            image["detail"] = _text(part.get("detail"), f"{param}.detail")
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        if not file:
            raise InvalidRequest(f"'{param}' needs 'file_data' or 'file_id'", param=param,
                                 code="missing_required_parameter")
        return {"type": "file", "file": file}
    raise _refuse(f"Content part type {kind!r} is not supported at '{param}.type'", f"{param}.type",
                  "unsupported_value")


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], param: str) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"'{param}.role' must be one of user, assistant, system, developer",
                                 param=f"{param}.role", code="invalid_value")
        content = item.get("content")
        if isinstance(content, list):
            parts = [_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
            if role != "user" and all(p["type"] == "text" for p in parts):
                messages.append({"role": role, "content": "".join(p["text"] for p in parts)})
            elif role == "assistant" and all(p["type"] in ("text", "refusal") for p in parts):
                messages.append({"role": role, "content": parts})
            elif role != "user" and any(p["type"] not in ("text", "refusal") for p in parts):
                raise _refuse(f"'{param}.content': a {role} message takes text parts only",
                              f"{param}.content", "unsupported_value")
            else:
                messages.append({"role": role, "content": parts})
        else:
            messages.append({"role": role, "content": _text(content, f"{param}.content")})
    elif kind == "function_call":
        call = {"id": _text(item.get("call_id"), f"{param}.call_id"), "type": "function",
                "function": {"name": _text(item.get("name"), f"{param}.name"),
                             "arguments": _text(item.get("arguments", ""), f"{param}.arguments")}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and not isinstance(last.get("content"), list):
            last.setdefault("tool_calls", []).append(call)  # parallel calls, or a call after the text
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(p["text"] for p in (_part(p, f"{param}.output[{j}]") for j, p in enumerate(output))
                             if p["type"] == "text")
        messages.append({"role": "tool", "tool_call_id": _text(item.get("call_id"), f"{param}.call_id"),
                         "content": _text(output, f"{param}.output")})
    else:
        raise _refuse(f"Input items of type {kind!r} are not supported at '{param}.type' (served: message, "
                      "function_call, function_call_output)", f"{param}.type", "unsupported_value")


def _tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind != "function":
        raise _refuse(f"Tools of type {kind!r} are not supported at '{param}.type': this gateway serves "
                      "function tools only", f"{param}.type", "unsupported_value")
    fn = {"name": _text(tool.get("name"), f"{param}.name")}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            fn[key] = tool[key]
    return {"type": "function", "function": fn}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest("'tool_choice' must be auto, none, required or a function", param="tool_choice",
                                 code="invalid_value")
        return choice
    if choice.get("type") != "function":
        raise _refuse(f"'tool_choice' of type {choice.get('type')!r} is not supported: name a function tool",
                      "tool_choice.type", "unsupported_value")
    return {"type": "function", "function": {"name": _text(choice.get("name"), "tool_choice.name")}}


# ---------------------------------------------------------------- response
class OutputText(msgspec.Struct, frozen=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class OutputRefusal(msgspec.Struct, frozen=True, tag_field="type", tag="refusal"):
    refusal: str


class OutputMessage(msgspec.Struct, frozen=True, tag_field="type", tag="message"):
    id: str
    content: list[OutputText | OutputRefusal]
    status: str = "completed"
    role: str = "assistant"


class FunctionCallItem(msgspec.Struct, frozen=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: str = "completed"


OutputItem = OutputMessage | FunctionCallItem


class InputDetails(msgspec.Struct, frozen=True):
    cached_tokens: int = 0


class OutputDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: int = 0  # no reasoning tokens are reported by the chat path


class ResponseUsage(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputDetails = InputDetails()
    output_tokens_details: OutputDetails = OutputDetails()


class ResponseError(msgspec.Struct, frozen=True):
    code: str
    message: str


class ResponseObject(msgspec.Struct, frozen=True):
    """A response as OpenAI's API returns it, with the gateway's `smr` explanation."""

    id: str
    created_at: int
    model: str
    output: list[OutputItem]
    status: str = "completed"
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: dict[str, str] | None = None
    instructions: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)
    text: dict[str, Any] = msgspec.field(default_factory=lambda: {"format": {"type": "text"}})
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = msgspec.field(default_factory=lambda: {"effort": None, "summary": None})
    store: bool = False
    background: bool = False
    truncation: str = "disabled"
    user: str | None = None
    object: str = "response"
    smr: Explanation | None = None


def response_shell(req: ResponsesRequest, rid: str, created: int, model: str,
                   smr: Explanation | None) -> ResponseObject:
    """The response's fields that echo the request (every output and the usage still to be filled in)."""
    text = msgspec.to_builtins(req.text) if req.text is not None and req.text.format is not None else None
    reasoning = {"effort": req.reasoning.effort if req.reasoning else None, "summary": None}
    return ResponseObject(rid, created, model, [], "in_progress", instructions=req.instructions,
                          metadata=req.metadata or {}, parallel_tool_calls=req.parallel_tool_calls is not False,
                          temperature=req.temperature, top_p=req.top_p, tool_choice=req.tool_choice or "auto",
                          tools=req.tools or [], text=text or {"format": {"type": "text"}},
                          max_output_tokens=req.max_output_tokens, reasoning=reasoning, user=req.user, smr=smr)


def status_of(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """The response's status and incomplete_details for a chat finish_reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_usage(prompt: int, completion: int, cached: int = 0) -> ResponseUsage:
    return ResponseUsage(prompt, completion, prompt + completion, InputDetails(cached))
