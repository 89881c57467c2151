"""OpenAI wire types: requests, responses, stream chunks. The shared vocabulary of the gateway.

Decoders and encoders are built once here. Unknown request fields are not part of the Structs;
`parse_chat_request` keeps the body as sent (`ParsedChat.raw`) so OpenAI-compatible upstreams get them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.vocab.errors import InvalidRequest
from gateway.vocab.request_sizes import check_sizes
from router_core.types import Tier

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


# ---------------------------------------------------------------- request
class ImageUrl(msgspec.Struct, frozen=True, omit_defaults=True):
    url: str
    detail: str | None = None


class TextPart(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    text: str


class ImagePart(msgspec.Struct, frozen=True, tag_field="type", tag="image_url"):
    image_url: ImageUrl


class InputAudio(msgspec.Struct, frozen=True):
    data: str
    format: str


class AudioPart(msgspec.Struct, frozen=True, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


class FilePart(msgspec.Struct, frozen=True, tag_field="type", tag="file"):
    file: dict[str, Any]


class RefusalPart(msgspec.Struct, frozen=True, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class FunctionCall(msgspec.Struct, frozen=True):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, frozen=True):
    function: FunctionDef
    type: Literal["function"] = "function"


# The ranges the OpenAI API accepts; outside them it answers 400, and so does the gateway.
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TokenLimit = Annotated[int, Meta(ge=1, le=10_000_000)]
ChoiceCount = Annotated[int, Meta(ge=1, le=128)]
ModelName = Annotated[str, Meta(max_length=256)]


class StreamOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    messages: list[Message]
    model: ModelName | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    n: ChoiceCount | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ParsedChat(msgspec.Struct, frozen=True):
    """A validated request and the body exactly as sent (fields we do not interpret included)."""

    request: ChatCompletionRequest
    raw: dict[str, Any]


class CompleteRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: str
    force_tier: Tier | None = None
    system: str | None = None
    max_tokens: TokenLimit | None = None
    temperature: Temperature | None = None


# ---------------------------------------------------------------- response
class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Gateway-internal hint, never encoded: cached prompt tokens the upstream reported.
    cached_tokens: int = 0
    estimated: bool = False


class UsageOut(msgspec.Struct, frozen=True, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class ResponseMessage(msgspec.Struct, frozen=True):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(msgspec.Struct, frozen=True):
    message: ResponseMessage
    index: int = 0
    finish_reason: str | None = "stop"
    logprobs: Any = None


# ---------------------------------------------------------------- the gateway's own
class CascadeStep(msgspec.Struct, frozen=True):
    """A cheap answer that failed its check and went to the next tier (both calls are priced)."""

    from_tier: str
    model: str          # the backend whose answer failed
    reason: str         # empty | refusal | length | json: ... | tool_schema: ...
    cost_usd: float     # what that first call cost (part of cost_usd)


class ShadowDecision(msgspec.Struct, frozen=True, omit_defaults=True):
    """Shadow mode: what routing would have chosen for this request, priced on the answer's tokens."""

    tier: str
    model: str
    classifier: str
    score: float | None = None
    cost_usd: float | None = None       # the routed model's price for these tokens
    savings_usd: float | None = None    # the served answer's cost minus cost_usd


class Explanation(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why an answer came from where it did: the `smr` object of routed responses (gateway/path/explain.py)."""

    request_id: str
    route: str                          # auto | forced | direct | cache
    cache: str                          # miss | hit-exact | hit-semantic | bypass
    tier: str | None = None
    model: str | None = None            # the backend that answered
    classifier: str | None = None
    score: float | None = None          # the classifier's difficulty score, 0..1
    cutoffs: tuple[float, float] | None = None
    margin: float | None = None         # how far the score is from the nearest cut-off (a tier change)
    reasons: list[str] | None = None    # what moved the score most (the heuristic), or the classifier's label
    similarity: float | None = None     # of a semantic cache hit
    fallbacks: list[str] | None = None  # backends tried before the one that answered, and why each failed
    skipped: list[str] | None = None    # classifiers that did not decide, and backends (and tiers) passed
    #                                     over before any call for lacking what the request needs: why
    cost_usd: float | None = None       # on a stream, known when it ends (its last chunk, the log)
    savings_usd: float | None = None    # against always calling the baseline model: routing + cache
    routing_savings_usd: float | None = None  # the baseline model's cost minus the routed model's
    cache_savings_usd: float | None = None    # a cache hit: what the routed model would have cost again
    cascade: CascadeStep | None = None  # the cheap answer that was checked and escalated
    shadow: ShadowDecision | None = None  # shadow mode: what routing would have done


class ChatCompletion(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut | None = None
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    smr: Explanation | None = None  # OpenAI clients ignore fields they do not know


class DeltaFunction(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: DeltaFunction | None = None


class Delta(msgspec.Struct, frozen=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    refusal: str | None = None


class ChunkChoice(msgspec.Struct, frozen=True):
    delta: Delta
    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None
    object: str = "chat.completion.chunk"


class ExplainedChunk(ChatCompletionChunk, frozen=True):
    """The first chunk of a stream, and its usage chunk, carry the `smr` explanation."""

    smr: Explanation | None = None


class ModelCard(msgspec.Struct, frozen=True):
    id: str
    owned_by: str
    created: int = 0
    object: str = "model"


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelCard]
    object: str = "list"


class CompleteResponse(msgspec.Struct, frozen=True):
    response: str
    model_used: str
    difficulty_tag: str
    estimated_cost: float
    estimated_savings: float
    latency_ms: float
    cache_hit: bool
    smr: Explanation | None = None


# ---------------------------------------------------------------- codecs, built once
encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
complete_request_decoder = msgspec.json.Decoder(CompleteRequest)


def usage_out(u: Usage) -> UsageOut:
    details = {"cached_tokens": u.cached_tokens} if u.cached_tokens else None
    return UsageOut(u.prompt_tokens, u.completion_tokens, u.total_tokens, details)


def validation_error(exc: msgspec.ValidationError) -> InvalidRequest:
    text = str(exc).replace("`", "")
    param = None
    if " - at $." in text:
        text, _, path = text.partition(" - at $.")
        param = path
        if text.startswith("Object missing required field"):
            return InvalidRequest(f"Missing required parameter: '{path}.{text.split()[-1]}'",
                                  param=path, code="missing_required_parameter")
        text = f"Invalid value for '{path}': {text}"
    elif text.startswith("Object missing required field"):
        name = text.split()[-1]
        return InvalidRequest(f"Missing required parameter: '{name}'", param=name,
                              code="missing_required_parameter")
    return InvalidRequest(text, param=param, code="invalid_value")


def _too_deep() -> InvalidRequest:
    return InvalidRequest("Request body is nested too deeply", code="invalid_json")


def decode_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        raw = _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(raw, dict):
        raise InvalidRequest("Request body must be a JSON object", code="invalid_json")
    return raw


def parse_chat_request(body: bytes, *, max_messages: int | None = None,
                       max_content_parts: int | None = None) -> ParsedChat:
    """A chat request, validated; `max_messages` and `max_content_parts` are `server.*` (None: no cap)."""
    raw = decode_json_object(body)
    check_sizes(raw, max_messages, max_content_parts)
    try:
        req = msgspec.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise _too_deep() from None
    if not req.messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages",
                             code="invalid_value")
    return ParsedChat(req, raw)


def parse_complete_request(body: bytes) -> CompleteRequest:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        req = complete_request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise _too_deep() from None
    if not req.prompt.strip():
        raise InvalidRequest("'prompt' must not be empty", param="prompt", code="invalid_value")
    return req


def split_pieces(text: str, pieces: int) -> list[str]:
    """Split text into at most `pieces` runs of whole words that join back to the text."""
    words = text.split(" ")
    n = max(1, min(pieces, len(words)))
    size = -(-len(words) // n)
    out = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return [p + (" " if i < len(out) - 1 else "") for i, p in enumerate(out)]


def message_text(m: Message) -> str:
    """The text of a message (text parts joined); other part kinds contribute nothing."""
    c = m.content
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    return "\n".join(p.text for p in c if isinstance(p, TextPart))
